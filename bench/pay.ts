/**
 * pay_invoice end to end with pre-approved tokens, 8 concurrent agents, PostgreSQL, sandbox Stripe in
 * the server's process:
 *
 *  - mcp:      a real MCP Client per agent over Streamable HTTP to the server (a child process: `paygate
 *              serve`, or with BENCH_SERVER=serve-mcp bench/serve-mcp.ts, which also counts its SQL), Bearer agent keys;
 *  - engine:   payInvoice called directly in this process (where the time goes without MCP and HTTP);
 *  - baseline: the SQL the server runs for one payment (the MCP request's key check, the engine's
 *              statements, the store of the provider's confirming webhook), captured from the pool in
 *              this run, replayed bare with `pg` for other invoices at the same concurrency on the same
 *              database;
 *  - engineSql: the same replay without the key check and the webhook (the engine's statements alone).
 *
 * Every token is minted (payInvoice without a token, approve() as the admin) before any timing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createDb } from '../src/db/pool.js';
import { authenticateAgent } from '../src/directory/agent-keys.js';
import { signStripeWebhookForTest, verifyStripeWebhook } from '../src/gateways/stripe/webhook.js';
import type { EngineDeps } from '../src/payments/context.js';
import { type PaymentConfirmation, payInvoice } from '../src/payments/pay.js';
import { startRuntime } from '../src/runtime.js';
import { processWebhookEvent } from '../src/sidecar/webhooks.js';
import { capturePool } from './support/capture.js';
import { type CpuReading, cpuMeter, postmasterPid } from './support/cpu.js';
import type { BenchServer } from './support/database.js';
import { benchEnv } from './support/env.js';
import { connectMcpClient, type McpClientKind, mcpClientKind } from './support/mcp-wire.js';
import { referenceDir } from './support/paths.js';
import {
  capturedRunId,
  describeTemplate,
  type PaymentIdentity,
  paymentIdentity,
  replay,
} from './support/replay.js';
import { INVOICE_AMOUNT_MINOR, mintPayJobs, type PayJob, payInput, seedTenant } from './support/seed.js';
import { type ServerChild, startServer } from './support/server.js';
import { type RunResult, runConcurrent, runPaced, summarize, type Timed } from './support/stats.js';

export const AGENTS = 8;

export interface PayBenchOptions {
  /** Timed payments per agent in each of the three runs. */
  perAgent?: number;
  /** Untimed payments per agent before each run (JIT, connection pools, plan caches). */
  warmup?: number;
  /** The timed payments are run in this many interleaved rounds of baseline, engine, MCP. */
  rounds?: number;
  /** Payments per agent in the paced (open-loop) run after the rounds. */
  pacedPerAgent?: number;
  /** 'one' (default): 8 agent keys of one tenant; 'per-agent': 8 tenants, one key each. */
  tenants?: 'one' | 'per-agent';
}

export interface PayBenchResult {
  agents: number;
  tenants: number;
  /** How the MCP agents made their calls (support/mcp-wire.ts): at the wire level, or the SDK's callTool. */
  mcpClient: McpClientKind;
  /** What the sandbox's webhooks to the server did during the run (event type and outcome: count). */
  serverWebhooks: Record<string, number>;
  /** The share of the timed MCP payments' webhooks that the server stored after their round's clock stopped. */
  lateWebhooks: number;
  mcp: RunResult;
  /** The MCP agents paced at half the rate `mcp` sustained (open loop), latency from when each was due. */
  paced: RunResult & { offeredPerSecond: number };
  engine: RunResult;
  /** Every statement the server runs for one payment, bare (the ratio's denominator). */
  baseline: RunResult;
  /** The engine's statements alone, bare (without the key check and the webhook store). */
  engineSql: RunResult;
  /**
   * CPU ms per timed payment on each side, split by process: the bench process (MCP clients, the engine
   * with its in-process sandbox, or the baseline's pg), the server child (idle but for its worker loop
   * outside the MCP runs), and PostgreSQL.
   */
  cpuPerPayment: Record<Side, CpuReading>;
  /** The captured payment: statements (without BEGIN/COMMIT) and transactions; the engine's alone. */
  sqlPerPayment: { statements: number; transactions: number };
  engineSqlPerPayment: { statements: number; transactions: number };
  server: {
    kind: string;
    peakRssMb: number;
    /** SQL the server ran per MCP payment (webhooks and key checks included), when it reports it. */
    sqlPerPayment?: { statements: number; transactions: number };
  };
}

/** Per agent: `warm` untimed jobs, then `rounds` equal chunks of timed ones. */
function split<T>(queues: T[][], warm: number, rounds: number): { warm: T[][]; rounds: T[][][] } {
  const size = (queues[0]!.length - warm) / rounds;
  return {
    warm: queues.map((q) => q.slice(0, warm)),
    rounds: Array.from({ length: rounds }, (_, r) =>
      queues.map((q) => q.slice(warm + r * size, warm + (r + 1) * size)),
    ),
  };
}

type Side = 'baseline' | 'engineSql' | 'engine' | 'mcp';

/** Fresh for each replayed payment. */
type Fresh = 'paymentId' | 'confirmationNumber' | 'providerReference' | 'runId' | 'eventId';
type StoredIdentity = Omit<PaymentIdentity, Fresh>;

/** The statements the server runs for a payment outside the engine: the key check and the webhook store. */
const SERVER_ONLY = /paygate_agent_key_by_hash|paygate_store_confirming_event/;

async function identities(deps: EngineDeps, jobs: PayJob[]): Promise<Map<string, StoredIdentity>> {
  const { rows } = await deps.db.withSystem((client) =>
    client.query<{
      approval_id: string;
      token_hash: Buffer;
      invoice_id: string;
      number: string;
      tenant_id: string;
      agent_key_id: string;
      agent_key_hash: Buffer;
      payment_method_id: string;
      counterparty_id: string;
    }>(
      `SELECT a.id AS approval_id, a.token_hash, i.id AS invoice_id, i.number, a.tenant_id, a.agent_key_id,
              k.key_hash AS agent_key_hash, i.counterparty_id,
              (SELECT id FROM payment_methods m WHERE m.tenant_id = a.tenant_id AND m.rail = 'stripe' LIMIT 1) AS payment_method_id
       FROM approvals a JOIN invoices i ON i.id = (a.params->>'invoice_id')::uuid
       JOIN agent_keys k ON k.id = a.agent_key_id WHERE a.id = ANY($1)`,
      [jobs.map((j) => j.approvalId)],
    ),
  );
  return new Map(
    rows.map((r) => [
      r.approval_id,
      {
        approvalId: r.approval_id,
        tokenHash: r.token_hash,
        invoiceId: r.invoice_id,
        invoiceNumber: r.number,
        tenantId: r.tenant_id,
        agentKeyId: r.agent_key_id,
        agentKeyHash: r.agent_key_hash,
        paymentMethodId: r.payment_method_id,
        counterpartyId: r.counterparty_id,
      },
    ]),
  );
}

function freshPayment(): Pick<PaymentIdentity, Fresh> {
  return {
    eventId: `evt_${randomBytes(12).toString('hex')}`,
    runId: randomUUID(),
    paymentId: randomUUID(),
    confirmationNumber: `PG-${randomBytes(5).toString('hex').toUpperCase()}`,
    providerReference: `pi_${randomBytes(12).toString('hex')}`,
  };
}

function expectPaid(result: unknown, invoice: string): void {
  const status = (result as { status?: string }).status;
  if (status !== 'paid') throw new Error(`bench pay: ${invoice} ended ${status}: ${JSON.stringify(result)}`);
}

/**
 * Stripe's payment_intent.succeeded for a payment we made, signed: what the sandbox delivers to the
 * server's sidecar after each MCP payment, built from the reference event.
 */
function confirmingEvent(payment: PaymentConfirmation, secret: string) {
  const reference = JSON.parse(
    readFileSync(path.join(referenceDir(), 'stripe/events/payment_intent.succeeded.json'), 'utf8'),
  ) as { data: { object: Record<string, unknown> } };
  const eventId = `evt_${randomBytes(12).toString('hex')}`;
  const body = JSON.stringify({
    ...reference,
    id: eventId,
    created: Math.floor(Date.now() / 1000),
    data: {
      object: {
        ...reference.data.object,
        id: payment.gateway_reference,
        amount: INVOICE_AMOUNT_MINOR,
        amount_received: INVOICE_AMOUNT_MINOR,
        currency: 'usd',
        status: 'succeeded',
        metadata: { paygate_payment_id: payment.payment_id },
      },
    },
  });
  return { eventId, event: verifyStripeWebhook(body, signStripeWebhookForTest(body, secret), secret) };
}

export async function benchPay(server: BenchServer, options: PayBenchOptions = {}): Promise<PayBenchResult> {
  const perAgent = options.perAgent ?? 60;
  const warmup = options.warmup ?? 2;
  const rounds = options.rounds ?? 3;
  const pacedPerAgent = options.pacedPerAgent ?? 50;
  const database = await server.createDatabase('pay');
  const runtime = await startRuntime({ databaseUrl: database.url, env: benchEnv() });
  let child: ServerChild | undefined;
  try {
    const { deps } = runtime;
    // One tenant with 8 agent keys (the realistic case: one finance team's agents), or 8 tenants with
    // one key each (to show what the per-tenant audit chain costs).
    const tenants =
      options.tenants === 'per-agent'
        ? await Promise.all(Array.from({ length: AGENTS }, (_, i) => seedTenant(runtime.db, 1, `bench${i}`)))
        : [await seedTenant(runtime.db, AGENTS)];
    const tenant = { ...tenants[0]!, agents: tenants.flatMap((t) => t.agents) };
    const mint = async (prefix: string) =>
      split(
        (await Promise.all(tenants.map((t) => mintPayJobs(deps, t, warmup + perAgent, prefix)))).flat(),
        warmup,
        rounds,
      );
    const captureJobs = await mintPayJobs(deps, { ...tenant, agents: tenant.agents.slice(0, 1) }, 2, 'CAP');
    const engineJobs = await mint('ENG');
    const baselineJobs = await mint('SQL');
    const engineSqlJobs = await mint('SQE');
    const mcpJobs = await mint('MCP');
    const pacedJobs = await Promise.all(tenants.map((t) => mintPayJobs(deps, t, pacedPerAgent, 'PACE'))).then(
      (queues) => queues.flat(),
    );

    // Capture one payment's SQL as the server runs it (after one warm payment, so no first-call-only
    // statement is in it), through the functions the server calls: the MCP request's key check, the
    // engine, and the sidecar's handling of the provider's confirming webhook.
    const capture = capturePool(runtime.db.pool);
    const agent0 = tenant.agents[0]!;
    const webhookSecret = `whsec_${randomBytes(24).toString('hex')}`;
    const payAsServer = async (job: PayJob) => {
      await authenticateAgent(deps.db, agent0.key);
      // recordRun's agent_runs update is the engine's last statement, awaited before payInvoice returns.
      const payment = (await payInvoice(
        deps,
        { agentKey: agent0.agentKey },
        payInput(job.invoice, job.token),
      )) as PaymentConfirmation;
      expectPaid(payment, job.invoice);
      const { eventId, event } = confirmingEvent(payment, webhookSecret);
      const stored = await processWebhookEvent(deps, event);
      if (stored.outcome !== 'ignored')
        throw new Error(`bench pay: the confirming webhook of ${job.invoice} was ${stored.outcome}`);
      return { payment, eventId };
    };
    const [warmJob, capturedJob] = captureJobs[0] as [PayJob, PayJob];
    await payAsServer(warmJob);
    capture.start();
    const { payment: captured, eventId: capturedEventId } = await payAsServer(capturedJob);
    const template = capture.stop();
    const engineTemplate = template.filter((s) => !SERVER_ONLY.test(s.text));
    if (template.length - engineTemplate.length !== 2)
      throw new Error('bench pay: the captured payment lacks the key check or the webhook store');

    const payDirect = async (job: PayJob, worker: number) => {
      const agent = tenant.agents[worker]!;
      expectPaid(
        await payInvoice(deps, { agentKey: agent.agentKey }, payInput(job.invoice, job.token)),
        job.invoice,
      );
    };

    const ids = await identities(deps, [
      capturedJob,
      ...[baselineJobs, engineSqlJobs].flatMap((jobs) => [...jobs.warm.flat(), ...jobs.rounds.flat(2)]),
    ]);
    const from: PaymentIdentity = {
      ...ids.get(capturedJob.approvalId)!,
      paymentId: captured.payment_id,
      confirmationNumber: captured.confirmation_number!,
      providerReference: captured.gateway_reference!,
      runId: capturedRunId(template),
      eventId: capturedEventId,
    };
    const bare = createDb(database.url, { max: 10, applicationName: 'paygate-bench-baseline' });
    const fromIdentity = paymentIdentity(from);
    const replayEngineSql = (job: PayJob) =>
      replay(
        bare.pool,
        engineTemplate,
        fromIdentity,
        paymentIdentity({ ...ids.get(job.approvalId)!, ...freshPayment() }),
      );
    // As over MCP, the provider's webhook comes after the agent has its answer: the agent does not wait
    // for it. A round's clock runs until all of its webhooks are stored (stricter than the MCP side,
    // whose last ~200 ms of webhooks come after its clock stops: see lateWebhooks).
    const webhookPart = template.filter((s) => /paygate_store_confirming_event/.test(s.text));
    const requestPart = template.filter((s) => !webhookPart.includes(s));
    const webhooksInFlight = new Set<Promise<void>>();
    const replayOne = async (job: PayJob) => {
      const to = paymentIdentity({ ...ids.get(job.approvalId)!, ...freshPayment() });
      await replay(bare.pool, requestPart, fromIdentity, to);
      const webhook = replay(bare.pool, webhookPart, fromIdentity, to).finally(() =>
        webhooksInFlight.delete(webhook),
      );
      webhooksInFlight.add(webhook);
    };
    const replayRound = async (queues: PayJob[][]): Promise<Timed> => {
      const started = performance.now();
      const run = await runConcurrent(queues, replayOne);
      while (webhooksInFlight.size > 0) await Promise.all(webhooksInFlight);
      return { ...run, seconds: (performance.now() - started) / 1000 };
    };

    child = await startServer(database.url);
    const clientKind = mcpClientKind();
    const clients = await Promise.all(
      tenant.agents.map((agent) => connectMcpClient(child!.url, agent.key, clientKind)),
    );
    const payMcp = async (job: PayJob, worker: number) => {
      const result = await clients[worker]!.callTool({
        name: 'pay_invoice',
        arguments: payInput(job.invoice, job.token),
      });
      if (result.isError)
        throw new Error(
          `bench pay: ${job.invoice} refused over MCP: ${JSON.stringify(result.structuredContent)}`,
        );
      expectPaid(result.structuredContent, job.invoice);
    };

    // Interleaved rounds, so a change in the machine's load during the run falls on all four alike.
    await replayRound(baselineJobs.warm);
    await runConcurrent(engineSqlJobs.warm, replayEngineSql);
    await runConcurrent(engineJobs.warm, payDirect);
    // The sandbox delivers each MCP payment's webhook 200 ms after its call. A round's clock stops at its
    // last answer; the webhooks still to come are then waited for, untimed, so that they never fall into
    // the next round (a baseline's). How many came after the clock is reported.
    const storedWebhooks = async () =>
      (
        await runtime.db.withSystem((client) =>
          client.query<{ n: number }>('SELECT count(*)::int AS n FROM webhook_events'),
        )
      ).rows[0]!.n;
    const drainWebhooks = async (expected: number) => {
      const deadline = Date.now() + 30_000;
      while ((await storedWebhooks()) < expected) {
        if (Date.now() > deadline)
          throw new Error("bench pay: the MCP payments' webhooks did not all arrive");
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    let lateWebhooks = 0;
    const mcpRound = async (queues: PayJob[][], timedRun: (run: () => Promise<Timed>) => Promise<void>) => {
      const expected = (await storedWebhooks()) + queues.flat().length;
      await timedRun(() => runConcurrent(queues, payMcp));
      lateWebhooks += expected - (await storedWebhooks());
      await drainWebhooks(expected);
    };
    await mcpRound(mcpJobs.warm, async (run) => {
      await run();
    });
    lateWebhooks = 0;
    const parts: Record<Side, Timed[]> = { baseline: [], engineSql: [], engine: [], mcp: [] };
    const cpu = cpuMeter<Side>({ serverPid: child.pid, postmasterPid: await postmasterPid(bare.pool) });
    const timed = async (side: Side, run: () => Promise<Timed>) => {
      parts[side].push(await cpu.timed(side, run));
    };
    for (let r = 0; r < rounds; r++) {
      await timed('baseline', () => replayRound(baselineJobs.rounds[r]!));
      await timed('engineSql', () => runConcurrent(engineSqlJobs.rounds[r]!, replayEngineSql));
      await timed('engine', () => runConcurrent(engineJobs.rounds[r]!, payDirect));
      await mcpRound(mcpJobs.rounds[r]!, (run) => timed('mcp', run));
    }
    const timedPayments = AGENTS * perAgent;
    // The same agents at half the rate they just sustained, paced: the latency of a payment when the
    // server is not saturated (in a closed loop latency is agents / throughput, whatever the code does).
    const mcp = summarize(parts.mcp);
    const pacedPerSecond = Math.max(1, Math.round(mcp.perSecond / 2));
    const paced = await runPaced(pacedJobs, (AGENTS / pacedPerSecond) * 1000, payMcp);
    await Promise.all(clients.map((c) => c.close()));
    await bare.close();
    const peakRssMb = child.peakRssMb();
    const serverSql = await child.stop();
    // Every payment the server made: the warm-up and timed rounds, and the paced run.
    const mcpPayments = AGENTS * (warmup + perAgent) + pacedJobs.flat().length;

    // The replays did the work: every baseline invoice is paid and its approval consumed, and the full
    // replay stored each payment's confirming webhook.
    const { rows: check } = await runtime.db.withSystem((client) =>
      client.query<{ full: number; engine: number; hooks: number }>(
        `SELECT count(*) FILTER (WHERE i.number LIKE 'SQL-%')::int AS full,
                count(*) FILTER (WHERE i.number LIKE 'SQE-%')::int AS engine,
                (SELECT count(*)::int FROM webhook_events w JOIN payments p
                   ON p.id = (w.payload->'data'->'object'->'metadata'->>'paygate_payment_id')::uuid
                   JOIN invoices pi ON pi.id = p.invoice_id WHERE pi.number LIKE 'SQL-%') AS hooks
         FROM invoices i JOIN approvals a ON (a.params->>'invoice_id')::uuid = i.id
         WHERE i.status = 'paid' AND a.status = 'consumed'`,
      ),
    );
    const expected = AGENTS * (warmup + perAgent);
    if (check[0]!.full !== expected || check[0]!.engine !== expected || check[0]!.hooks !== expected)
      throw new Error(`bench pay: the baselines did ${JSON.stringify(check[0])}, not ${expected} each`);
    const { rows: hooks } = await runtime.db.withSystem((client) =>
      client.query<{ k: string; n: number }>(
        `SELECT event_type || ' ' || coalesce(outcome, 'unprocessed') AS k, count(*)::int AS n
         FROM webhook_events w
         WHERE NOT EXISTS (SELECT 1 FROM payments p JOIN invoices i ON i.id = p.invoice_id
                           WHERE p.id::text = w.payload->'data'->'object'->'metadata'->>'paygate_payment_id'
                             AND (i.number LIKE 'SQL-%' OR i.number LIKE 'CAP-%'))
         GROUP BY 1 ORDER BY 1`,
      ),
    );
    return {
      agents: AGENTS,
      tenants: tenants.length,
      mcpClient: clientKind,
      serverWebhooks: Object.fromEntries(hooks.map((h) => [h.k, h.n])),
      lateWebhooks: lateWebhooks / timedPayments,
      mcp,
      paced: { offeredPerSecond: pacedPerSecond, ...summarize([paced]) },
      engine: summarize(parts.engine),
      baseline: summarize(parts.baseline),
      engineSql: summarize(parts.engineSql),
      cpuPerPayment: {
        mcp: cpu.perItem('mcp', timedPayments),
        engine: cpu.perItem('engine', timedPayments),
        baseline: cpu.perItem('baseline', timedPayments),
        engineSql: cpu.perItem('engineSql', timedPayments),
      },
      sqlPerPayment: describeTemplate(template),
      engineSqlPerPayment: describeTemplate(engineTemplate),
      server: {
        kind: child.kind,
        peakRssMb,
        ...(serverSql
          ? {
              sqlPerPayment: {
                statements: serverSql.statements / mcpPayments,
                transactions: serverSql.transactions / mcpPayments,
              },
            }
          : {}),
      },
    };
  } finally {
    await child?.stop();
    await runtime.close();
    await database.drop();
  }
}
