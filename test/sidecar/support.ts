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

export async function startSidecar(
  f: Fixture,
  webhooks: { stripeSecret?: string; paypalWebhookId?: string },
  options: SidecarOptions = {},
  /** A port chosen beforehand (a sandbox that delivers webhooks must know it first); default any free one. */
  port = 0,
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
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    app,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
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
