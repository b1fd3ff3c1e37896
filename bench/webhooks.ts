/**
 * Webhook ingestion: Stripe `payment_intent.succeeded` events for payments that are `processing`, POSTed
 * signed (signStripeWebhookForTest, the secret the server was started with) to the server's
 * /webhooks/stripe by 8 concurrent senders; each one is verified, stored once, matched and applied
 * through the payment state machine (payment and invoice move, audit row). Verified events/s.
 *
 * Baseline: the SQL processWebhookEvent ran for one event, captured in this process, replayed bare for
 * other events at the same concurrency on the same database (the INSERT into webhook_events, the match,
 * the payment and invoice updates, the audit append, marking the event processed).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createDb } from '../src/db/pool.js';
import { signStripeWebhookForTest, verifyStripeWebhook } from '../src/gateways/stripe/webhook.js';
import { startRuntime } from '../src/runtime.js';
import { processWebhookEvent } from '../src/sidecar/webhooks.js';
import { bulkProcessingPayments } from './support/bulk.js';
import { capturePool } from './support/capture.js';
import { type CpuReading, cpuMeter, postmasterPid } from './support/cpu.js';
import type { BenchServer } from './support/database.js';
import { benchEnv } from './support/env.js';
import { referenceDir } from './support/paths.js';
import { describeTemplate, type Identity, replay } from './support/replay.js';
import { INVOICE_AMOUNT_MINOR, seedTenant } from './support/seed.js';
import { type ServerChild, startServer } from './support/server.js';
import { type RunResult, runConcurrent, summarize, type Timed } from './support/stats.js';

export const SENDERS = 8;

export interface WebhookBenchResult {
  senders: number;
  http: RunResult;
  baseline: RunResult;
  sqlPerEvent: { statements: number; transactions: number };
  /** CPU ms per event: bench process (the senders, or the baseline's `pg`), server, PostgreSQL. */
  cpuPerEvent: Record<'http' | 'baseline', CpuReading>;
}

interface Target {
  paymentId: string;
  invoiceId: string;
  invoiceNumber: string;
  providerReference: string;
  confirmationNumber: string;
}

interface SignedEvent {
  target: Target;
  eventId: string;
  body: string;
  signature: string;
}

function eventFor(template: Record<string, unknown>, target: Target, secret: string): SignedEvent {
  const eventId = `evt_bench_${randomBytes(8).toString('hex')}`;
  const object = (template.data as { object: Record<string, unknown> }).object;
  const payload = {
    ...template,
    id: eventId,
    created: Math.floor(Date.now() / 1000),
    data: {
      object: {
        ...object,
        id: target.providerReference,
        amount: INVOICE_AMOUNT_MINOR,
        amount_received: INVOICE_AMOUNT_MINOR,
        currency: 'usd',
        status: 'succeeded',
        metadata: { paygate_payment_id: target.paymentId },
      },
    },
  };
  const body = JSON.stringify(payload);
  return { target, eventId, body, signature: signStripeWebhookForTest(body, secret) };
}

function identity(e: SignedEvent): Identity {
  return { strings: { eventId: e.eventId, ...e.target } };
}

/** Split `items` round-robin into `n` queues. */
function deal<T>(items: T[], n: number): T[][] {
  const queues: T[][] = Array.from({ length: n }, () => []);
  for (const [i, item] of items.entries()) queues[i % n]!.push(item);
  return queues;
}

export async function benchWebhooks(
  server: BenchServer,
  options: { perSender?: number; rounds?: number } = {},
): Promise<WebhookBenchResult> {
  const perSender = options.perSender ?? 90;
  const rounds = options.rounds ?? 3;
  const warm = 5;
  const secret = `whsec_${randomBytes(24).toString('hex')}`;
  const database = await server.createDatabase('webhooks');
  const runtime = await startRuntime({
    databaseUrl: database.url,
    env: { ...benchEnv(), STRIPE_WEBHOOK_SECRET: secret },
  });
  let child: ServerChild | undefined;
  try {
    const tenant = await seedTenant(runtime.db, 1);
    const total = 2 * SENDERS * (warm + perSender) + 2;
    await bulkProcessingPayments(
      runtime.db,
      { tenantId: tenant.tenant.id, agentKeyId: tenant.agents[0]!.agentKey.id },
      'wh',
      total,
    );
    const { rows } = await runtime.db.withSystem((client) =>
      client.query<{
        id: string;
        invoice_id: string;
        number: string;
        provider_reference: string;
        confirmation_number: string;
      }>(
        `SELECT p.id, p.invoice_id, i.number, p.provider_reference, p.confirmation_number
         FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE p.provider_reference LIKE 'pi_wh_%'`,
      ),
    );
    const targets: Target[] = rows.map((r) => ({
      paymentId: r.id,
      invoiceId: r.invoice_id,
      invoiceNumber: r.number,
      providerReference: r.provider_reference,
      confirmationNumber: r.confirmation_number,
    }));
    const template = JSON.parse(
      readFileSync(path.join(referenceDir(), 'stripe/events/payment_intent.succeeded.json'), 'utf8'),
    ) as Record<string, unknown>;
    const events = targets.map((t) => eventFor(template, t, secret));
    const [warmCapture, captured] = events.splice(0, 2) as [SignedEvent, SignedEvent];
    const httpEvents = events.splice(0, SENDERS * (warm + perSender));
    const bareEvents = events;

    // Capture the SQL of one event through the same function the route calls (after one warm event).
    const capture = capturePool(runtime.db.pool);
    const verify = (e: SignedEvent) => verifyStripeWebhook(e.body, e.signature, secret);
    await processWebhookEvent(runtime.deps, verify(warmCapture));
    capture.start();
    const outcome = await processWebhookEvent(runtime.deps, verify(captured));
    const sql = capture.stop();
    if (outcome.outcome !== 'applied') throw new Error(`bench webhooks: captured event ${outcome.outcome}`);

    child = await startServer(database.url, { STRIPE_WEBHOOK_SECRET: secret });
    // The senders stand in for Stripe's machines, so they should cost this machine as little as they
    // can: node:http on kept-alive connections (fetch cost the bench process 4 times the CPU per event).
    const url = new URL('/webhooks/stripe', child.url);
    const agent = new http.Agent({ keepAlive: true, maxSockets: SENDERS });
    const send = (e: SignedEvent) =>
      new Promise<void>((resolve, reject) => {
        const request = http.request(
          url,
          {
            agent,
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(e.body),
              'stripe-signature': e.signature,
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('error', reject);
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              const answer = JSON.parse(text) as { outcome?: string };
              if (res.statusCode !== 200 || answer.outcome !== 'applied')
                reject(new Error(`bench webhooks: ${e.eventId} answered ${res.statusCode} ${text}`));
              else resolve();
            });
          },
        );
        request.on('error', reject);
        request.end(e.body);
      });
    const bare = createDb(database.url, { max: 10, applicationName: 'paygate-bench-baseline' });
    const replayOne = (e: SignedEvent) => replay(bare.pool, sql, identity(captured), identity(e));

    const split = (list: SignedEvent[]) => {
      const queues = deal(list, SENDERS);
      const size = perSender / rounds;
      return {
        warm: queues.map((q) => q.slice(0, warm)),
        rounds: Array.from({ length: rounds }, (_, r) =>
          queues.map((q) => q.slice(warm + r * size, warm + (r + 1) * size)),
        ),
      };
    };
    const h = split(httpEvents);
    const b = split(bareEvents);
    await runConcurrent(b.warm, replayOne);
    await runConcurrent(h.warm, send);
    const parts: Record<'http' | 'baseline', Timed[]> = { http: [], baseline: [] };
    const cpu = cpuMeter<'http' | 'baseline'>({
      serverPid: child.pid,
      postmasterPid: await postmasterPid(bare.pool),
    });
    const timed = async (side: 'http' | 'baseline', run: () => Promise<Timed>) => {
      parts[side].push(await cpu.timed(side, run));
    };
    for (let r = 0; r < rounds; r++) {
      await timed('baseline', () => runConcurrent(b.rounds[r]!, replayOne));
      await timed('http', () => runConcurrent(h.rounds[r]!, send));
    }
    await bare.close();
    agent.destroy();

    // Both did the work: every targeted payment succeeded and every event is stored as applied.
    const { rows: check } = await runtime.db.withSystem((client) =>
      client.query<{ paid: number; applied: number }>(
        `SELECT (SELECT count(*)::int FROM payments WHERE provider_reference LIKE 'pi_wh_%' AND status = 'succeeded') AS paid,
                (SELECT count(*)::int FROM webhook_events WHERE outcome = 'applied') AS applied`,
      ),
    );
    if (check[0]!.paid !== total || check[0]!.applied !== total)
      throw new Error(`bench webhooks: ${JSON.stringify(check[0])} of ${total} paid/applied`);
    return {
      senders: SENDERS,
      http: summarize(parts.http),
      baseline: summarize(parts.baseline),
      sqlPerEvent: describeTemplate(sql),
      cpuPerEvent: {
        http: cpu.perItem('http', SENDERS * perSender),
        baseline: cpu.perItem('baseline', SENDERS * perSender),
      },
    };
  } finally {
    await child?.stop();
    await runtime.close();
    await database.drop();
  }
}
