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
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
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
