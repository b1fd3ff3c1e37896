/**
 * The sidecar on a real loopback port over a fixture's database and engine, and the engine calls a
 * test needs to put payments into a known state (through payInvoice, as an agent would).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSidecarApp, type SidecarApp, type SidecarOptions } from '../../src/sidecar/app.js';
import type { Fixture } from '../support/fixture.js';
import { readReferenceJson } from '../support/reference.js';

export interface RunningSidecar {
  url: string;
  app: SidecarApp;
  close(): Promise<void>;
}

/**
 * A loopback server already listening on a port of the kernel's choosing, for a sidecar whose
 * address a sandbox must know before the sidecar exists. Holding the socket from the start is the
 * point: a port found free and then closed can be handed to anyone else (another test file's
 * sandbox, a database) before the sidecar binds it.
 */
export async function listeningServer(): Promise<http.Server> {
  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return server;
}

export function serverUrl(server: http.Server): string {
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export async function startSidecar(
  f: Fixture,
  webhooks: { stripeSecret?: string; paypalWebhookId?: string },
  options: SidecarOptions = {},
  /** A server from listeningServer() (a sandbox that delivers webhooks must know the address first); default a new one. */
  server?: http.Server,
): Promise<RunningSidecar> {
  const app = createSidecarApp(
    {
      db: f.t.db,
      deps: f.deps,
      webhooks,
      sandbox: { paypalUrl: f.sandbox.paypalUrl },
      // Errors surface in the test output; the rest of the log is noise here.
      logger: { info() {}, warn() {}, error: (obj, msg) => console.error(msg, obj) },
    },
    options,
  );
  const listening = server ?? (await listeningServer());
  listening.on('request', app);
  return {
    url: serverUrl(listening),
    app,
    close: () =>
      new Promise<void>((resolve) => {
        listening.close(() => resolve());
        listening.closeAllConnections();
      }),
  };
}

export async function count(f: Fixture, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await f.t.db.withSystem((c) => c.query<{ n: number }>(sql, params));
  return Number(rows[0]!.n);
}

/** Stripe's reference event `file`, retargeted at one of our payments, as Stripe would send it about it. */
export function stripeEventFor(file: string, eventId: string, paymentId: string, intentId: string): string {
  const event = readReferenceJson<{
    id: string;
    data: { object: { id: string; metadata: Record<string, string> } };
  }>(`stripe/events/${file}`);
  event.id = eventId;
  event.data.object.id = intentId;
  event.data.object.metadata = { paygate_payment_id: paymentId };
  return JSON.stringify(event);
}

/** A browser's cookie jar, just enough of one: name=value pairs from Set-Cookie, forms posted. */
export class PageClient {
  cookies = new Map<string, string>();
  constructor(readonly base: string) {}

  async request(method: 'GET' | 'POST', path: string, form?: Record<string, string>) {
    const response = await fetch(`${this.base}${path}`, {
      method,
      redirect: 'manual',
      headers: {
        cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      ...(form ? { body: new URLSearchParams(form).toString() } : {}),
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const [name, value] = pair!.split('=') as [string, string];
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return { response, text: await response.text() };
  }

  get = (path: string) => this.request('GET', path);
  post = (path: string, form: Record<string, string>) => this.request('POST', path, form);

  static csrf(html: string): string {
    const match = /name="_csrf" value="([^"]+)"/.exec(html);
    if (!match) throw new Error('no CSRF field on the page');
    return match[1]!;
  }

  async login(token: string, next = '/approvals') {
    const form = await this.get(`/login?next=${encodeURIComponent(next)}`);
    return this.post('/login', { _csrf: PageClient.csrf(form.text), token, next });
  }
}
