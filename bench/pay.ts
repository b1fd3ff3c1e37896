/**
 * pay_invoice end to end with pre-approved tokens, 8 concurrent agents, PostgreSQL, sandbox Stripe in
 * the server's process:
 *
 *  - mcp:      a real MCP Client per agent over Streamable HTTP to the server (a child process: `paygate
 *              serve`, or bench/serve-mcp.ts until serve mounts /mcp), Bearer agent keys;
 *  - engine:   payInvoice called directly in this process (where the time goes without MCP and HTTP);
 *  - baseline: the SQL the engine ran for one payment, captured from the pool in this run, replayed bare
 *              with `pg` for other invoices at the same concurrency on the same database.
 *
 * Every token is minted (payInvoice without a token, approve() as the admin) before any timing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createDb } from '../src/db/pool.js';
import type { EngineDeps } from '../src/payments/context.js';
import { type PaymentConfirmation, payInvoice } from '../src/payments/pay.js';
import { startRuntime } from '../src/runtime.js';
import { capturePool } from './support/capture.js';
import { type CpuReading, cpuMeter, postmasterPid } from './support/cpu.js';
import type { BenchServer } from './support/database.js';
import { benchEnv } from './support/env.js';
import { nodeHttpFetch } from './support/node-fetch.js';
import {
  capturedRunId,
  describeTemplate,
  type PaymentIdentity,
  paymentIdentity,
  replay,
} from './support/replay.js';
import { type BenchAgent, mintPayJobs, type PayJob, payInput, seedTenant } from './support/seed.js';
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
  /** What the sandbox's webhooks to the server did during the run (event type and outcome: count). */
  serverWebhooks: Record<string, number>;
  mcp: RunResult;
  /** The MCP agents paced at half the rate `mcp` sustained (open loop), latency from when each was due. */
  paced: RunResult & { offeredPerSecond: number };
  engine: RunResult;
  baseline: RunResult;
  /**
   * CPU ms per timed payment on each side, split by process: the bench process (MCP clients, the engine
   * with its in-process sandbox, or the baseline's pg), the server child (idle but for its worker loop
   * outside the MCP runs), and PostgreSQL.
   */
  cpuPerPayment: Record<Side, CpuReading>;
  /** The captured payment: statements (without BEGIN/COMMIT) and transactions. */
  sqlPerPayment: { statements: number; transactions: number };
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

type Side = 'baseline' | 'engine' | 'mcp';

type StoredIdentity = Omit<
  PaymentIdentity,
  'paymentId' | 'confirmationNumber' | 'providerReference' | 'runId'
>;

async function identities(deps: EngineDeps, jobs: PayJob[]): Promise<Map<string, StoredIdentity>> {
  const { rows } = await deps.db.withSystem((client) =>
    client.query<{
      approval_id: string;
      token_hash: Buffer;
      invoice_id: string;
      number: string;
      tenant_id: string;
      agent_key_id: string;
      payment_method_id: string;
      counterparty_id: string;
    }>(
      `SELECT a.id AS approval_id, a.token_hash, i.id AS invoice_id, i.number, a.tenant_id, a.agent_key_id,
              i.counterparty_id,
              (SELECT id FROM payment_methods m WHERE m.tenant_id = a.tenant_id AND m.rail = 'stripe' LIMIT 1) AS payment_method_id
       FROM approvals a JOIN invoices i ON i.id = (a.params->>'invoice_id')::uuid WHERE a.id = ANY($1)`,
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
        paymentMethodId: r.payment_method_id,
        counterpartyId: r.counterparty_id,
      },
    ]),
  );
}

function freshPayment(): Pick<
  PaymentIdentity,
  'paymentId' | 'confirmationNumber' | 'providerReference' | 'runId'
> {
  return {
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

async function connectAgent(url: string, agent: BenchAgent): Promise<Client> {
  const client = new Client({ name: 'paygate-bench', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${agent.key}` } },
      ...(process.env.BENCH_MCP_FETCH === 'undici'
        ? {}
        : { fetch: nodeHttpFetch(new http.Agent({ keepAlive: true })) }),
    }),
  );
  return client;
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
    const mcpJobs = await mint('MCP');
    const pacedJobs = await Promise.all(tenants.map((t) => mintPayJobs(deps, t, pacedPerAgent, 'PACE'))).then(
      (queues) => queues.flat(),
    );

    // Capture one payment's SQL (after one warm payment, so no first-call-only statement is in it).
    const capture = capturePool(runtime.db.pool);
    const agent0 = tenant.agents[0]!;
    const [warmJob, capturedJob] = captureJobs[0] as [PayJob, PayJob];
    expectPaid(
      await payInvoice(deps, { agentKey: agent0.agentKey }, payInput(warmJob.invoice, warmJob.token)),
      warmJob.invoice,
    );
    capture.start();
    const captured = (await payInvoice(
      deps,
      { agentKey: agent0.agentKey },
      payInput(capturedJob.invoice, capturedJob.token),
    )) as PaymentConfirmation;
    // recordRun's agent_runs insert is the last statement and is awaited before payInvoice returns.
    const template = capture.stop();
    expectPaid(captured, capturedJob.invoice);

    const payDirect = async (job: PayJob, worker: number) => {
      const agent = tenant.agents[worker]!;
      expectPaid(
        await payInvoice(deps, { agentKey: agent.agentKey }, payInput(job.invoice, job.token)),
        job.invoice,
      );
    };

    const ids = await identities(deps, [
      capturedJob,
      ...baselineJobs.warm.flat(),
      ...baselineJobs.rounds.flat(2),
    ]);
    const from: PaymentIdentity = {
      ...ids.get(capturedJob.approvalId)!,
      paymentId: captured.payment_id,
      confirmationNumber: captured.confirmation_number!,
      providerReference: captured.gateway_reference!,
      runId: capturedRunId(template),
    };
    const bare = createDb(database.url, { max: 10, applicationName: 'paygate-bench-baseline' });
    const replayOne = (job: PayJob) =>
      replay(
        bare.pool,
        template,
        paymentIdentity(from),
        paymentIdentity({ ...ids.get(job.approvalId)!, ...freshPayment() }),
      );

    child = await startServer(database.url);
    const clients = await Promise.all(tenant.agents.map((agent) => connectAgent(child!.url, agent)));
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

    // Interleaved rounds, so a change in the machine's load during the run falls on all three alike.
    await runConcurrent(baselineJobs.warm, replayOne);
    await runConcurrent(engineJobs.warm, payDirect);
    await runConcurrent(mcpJobs.warm, payMcp);
    const parts: Record<Side, Timed[]> = { baseline: [], engine: [], mcp: [] };
    const cpu = cpuMeter<Side>({ serverPid: child.pid, postmasterPid: await postmasterPid(bare.pool) });
    const timed = async (side: Side, run: () => Promise<Timed>) => {
      parts[side].push(await cpu.timed(side, run));
    };
    for (let r = 0; r < rounds; r++) {
      await timed('baseline', () => runConcurrent(baselineJobs.rounds[r]!, replayOne));
      await timed('engine', () => runConcurrent(engineJobs.rounds[r]!, payDirect));
      await timed('mcp', () => runConcurrent(mcpJobs.rounds[r]!, payMcp));
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

    // The replay did the work: every baseline invoice is paid and its approval consumed.
    const { rows: check } = await runtime.db.withSystem((client) =>
      client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM invoices i JOIN approvals a ON (a.params->>'invoice_id')::uuid = i.id
         WHERE i.number LIKE 'SQL-%' AND i.status = 'paid' AND a.status = 'consumed'`,
      ),
    );
    if (check[0]!.n !== AGENTS * (warmup + perAgent))
      throw new Error(
        `bench pay: the baseline paid ${check[0]!.n} invoices, not ${AGENTS * (warmup + perAgent)}`,
      );
    const { rows: hooks } = await runtime.db.withSystem((client) =>
      client.query<{ k: string; n: number }>(
        `SELECT event_type || ' ' || coalesce(outcome, 'unprocessed') AS k, count(*)::int AS n
         FROM webhook_events GROUP BY 1 ORDER BY 1`,
      ),
    );
    return {
      agents: AGENTS,
      tenants: tenants.length,
      serverWebhooks: Object.fromEntries(hooks.map((h) => [h.k, h.n])),
      mcp,
      paced: { offeredPerSecond: pacedPerSecond, ...summarize([paced]) },
      engine: summarize(parts.engine),
      baseline: summarize(parts.baseline),
      cpuPerPayment: {
        mcp: cpu.perItem('mcp', timedPayments),
        engine: cpu.perItem('engine', timedPayments),
        baseline: cpu.perItem('baseline', timedPayments),
      },
      sqlPerPayment: describeTemplate(template),
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
