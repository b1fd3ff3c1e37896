/**
 * The worker: N due scheduled payments (BENCH_WORKER_PAYMENTS; 1,000 by default so that `npm run bench`
 * stays within minutes on 2 cores; see BENCHMARKS.md) executed by 2 `paygate worker --once` processes
 * started together against the same database; wall time until both exit (process start, migrations
 * check and sandbox start included) and payments/s.
 *
 * Baseline: one in-process worker pass over one full claim of due schedules (DEFAULT_BATCH_SIZE, one
 * tenant: one batch) is captured; its claim statement and the statements it ran for that batch (phase 1,
 * phase 3 of the payments the provider confirmed, minus the provider calls) are replayed bare by 2
 * concurrent loops in this process: claim a batch the same way (same SQL, same batch size, same
 * exclusion list), replay the batch's statements for the rows claimed, their ids substituted in every
 * array parameter (a smaller last batch drops the captured positions it lacks).
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDb } from '../src/db/pool.js';
import { startRuntime } from '../src/runtime.js';
import { createWorker, DEFAULT_BATCH_SIZE } from '../src/worker/index.js';
import { bulkDueSchedules } from './support/bulk.js';
import { type Captured, capturePool } from './support/capture.js';
import {
  type CpuReading,
  cpuSince,
  exitedChildrenCpuMs,
  perItem,
  postmasterPid,
  readCpu,
} from './support/cpu.js';
import type { BenchServer } from './support/database.js';
import { benchEnv } from './support/env.js';
import { describeTemplate, type Identity, replay } from './support/replay.js';
import { seedTenant } from './support/seed.js';
import { profileFlags } from './support/server.js';

export const WORKERS = 2;
const BATCH_SIZE = DEFAULT_BATCH_SIZE;
const CLAIM = 'WITH due AS (';

export interface WorkerBenchResult {
  workers: number;
  payments: number;
  /** Wall time of the 2 processes, start to both exited. */
  seconds: number;
  perSecond: number;
  /** schedule status / payment status: count, for the worker run. */
  outcomes: Record<string, number>;
  baselineSeconds: number;
  baselinePerSecond: number;
  /** The captured batch's SQL, divided by its payments. */
  sqlPerPayment: { statements: number; transactions: number };
  batchSize: number;
  /**
   * CPU ms per payment: for the worker, `serverMs` is its 2 processes (sandbox included) and `benchMs`
   * this process (idle then); for the baseline, `benchMs` is this process's replay. `postgresMs` counts
   * the bench database's PostgreSQL server (its postmaster and every process it forked, exited backends
   * included), not other servers on the machine.
   */
  cpuPerPayment: { worker: CpuReading; baseline: CpuReading };
}

interface PaymentIds {
  id: string;
  confirmation_number: string;
  provider_reference: string;
}

function perPayment(sql: { statements: number; transactions: number }, payments: number) {
  return { statements: sql.statements / payments, transactions: sql.transactions / payments };
}

interface ScheduleRow {
  id: string;
  invoice_id: string;
  number: string;
  approval_id: string;
}

const distRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function runWorkerProcess(databaseUrl: string, id: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        ...profileFlags(),
        path.join(distRoot, 'src/cli.js'),
        '--database-url',
        databaseUrl,
        '--json',
        'worker',
        '--once',
        '--worker-id',
        id,
      ],
      { env: benchEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`worker ${id} exited ${code}: ${out.slice(-2000)}`)),
    );
  });
}

async function schedules(db: ReturnType<typeof createDb>, prefix: string): Promise<Map<string, ScheduleRow>> {
  const { rows } = await db.withSystem((client) =>
    client.query<ScheduleRow>(
      `SELECT s.id, s.invoice_id, i.number, s.approval_id FROM scheduled_payments s
       JOIN invoices i ON i.id = s.invoice_id WHERE i.number LIKE $1`,
      [`${prefix}-%`],
    ),
  );
  return new Map(rows.map((r) => [r.id, r]));
}

export async function benchWorker(
  server: BenchServer,
  options: { payments?: number } = {},
): Promise<WorkerBenchResult> {
  const payments = options.payments ?? Number(process.env.BENCH_WORKER_PAYMENTS ?? 1_000);
  const database = await server.createDatabase('worker');
  const runtime = await startRuntime({ databaseUrl: database.url, env: benchEnv() });
  try {
    const tenant = await seedTenant(runtime.db, 1);
    const ctx = { tenantId: tenant.tenant.id, agentKeyId: tenant.agents[0]!.agentKey.id };

    // Capture: one in-process pass over one full batch of due schedules.
    await bulkDueSchedules(runtime.db, ctx, 'CAP', BATCH_SIZE);
    const capture = capturePool(runtime.db.pool);
    capture.start();
    const summary = await createWorker(runtime, {
      workerId: 'bench-capture',
      batchSize: BATCH_SIZE,
    }).runOnce();
    const pass = capture.stop();
    if (summary.scheduled.paid !== BATCH_SIZE)
      throw new Error(`bench worker: capture pass ${JSON.stringify(summary)}`);
    const claimAt = pass.findIndex((s) => s.text.includes(CLAIM) && s.text.includes('scheduled_payments'));
    const nextClaim = pass.findIndex((s, i) => i > claimAt && s.text.includes(CLAIM));
    // The claim's own transaction (its opening statement, the claim, COMMIT), then everything up to the
    // next claim's opening statement.
    const claimTx = pass.slice(claimAt - 1, claimAt + 2);
    const perBatch = pass.slice(claimAt + 2, nextClaim - 1);
    // The captured batch's positions, in schedule id order (the order its statements list them).
    const captured = [...(await schedules(runtime.db, 'CAP')).values()].sort((x, y) =>
      x.id < y.id ? -1 : 1,
    );
    const { rows: cp } = await runtime.db.withSystem((client) =>
      client.query<{ scheduled_payment_id: string } & PaymentIds>(
        `SELECT scheduled_payment_id, id, confirmation_number, provider_reference FROM payments
          WHERE scheduled_payment_id = ANY($1::uuid[])`,
        [captured.map((c) => c.id)],
      ),
    );
    const capturedPayments = new Map(cp.map((p) => [p.scheduled_payment_id, p]));
    /** The batch `batch` as positions 0.. of the captured one; the positions it lacks are absent. */
    const identity = (batch: { s: ScheduleRow; p: PaymentIds }[], workerId: string): Identity => ({
      strings: Object.fromEntries([
        ['workerId', workerId],
        ...batch.flatMap(({ s, p }, k) => [
          [`scheduleId${k}`, s.id],
          [`invoiceId${k}`, s.invoice_id],
          [`invoiceNumber${k}`, s.number],
          [`approvalId${k}`, s.approval_id],
          [`paymentId${k}`, p.id],
          [`confirmationNumber${k}`, p.confirmation_number],
          [`providerReference${k}`, p.provider_reference],
        ]),
      ]),
      absent: captured
        .slice(batch.length)
        .flatMap((s) => [s.id, s.invoice_id, s.approval_id, capturedPayments.get(s.id)!.id]),
    });
    const from = identity(
      captured.map((s) => ({ s, p: capturedPayments.get(s.id)! })),
      'bench-capture',
    );

    // The real thing: 2 worker processes over `payments` due schedules.
    await bulkDueSchedules(runtime.db, ctx, 'WRK', payments);
    const sources = {
      postmasterPid: await postmasterPid(runtime.db.pool),
      exitedBackends: true,
    };
    const t0 = performance.now();
    const cpu0 = readCpu(sources);
    const children0 = exitedChildrenCpuMs();
    await Promise.all(
      Array.from({ length: WORKERS }, (_, i) => runWorkerProcess(database.url, `bench-worker-${i}`)),
    );
    const seconds = (performance.now() - t0) / 1000;
    // The worker processes count as the "server" side here.
    const workerCpu: CpuReading = {
      ...cpuSince(cpu0, sources),
      serverMs: exitedChildrenCpuMs() - children0,
    };
    // What the workers left: every schedule should be executed with its payment succeeded. Anything else
    // (a provider call that timed out under load and was deferred to a later pass) is reported, not hidden.
    const { rows: outcomes } = await runtime.db.withSystem((client) =>
      client.query<{ k: string; n: number }>(
        `SELECT s.status || '/' || coalesce(p.status, 'no payment') AS k, count(*)::int AS n
         FROM scheduled_payments s JOIN invoices i ON i.id = s.invoice_id
         LEFT JOIN payments p ON p.id = s.payment_id WHERE i.number LIKE 'WRK-%' GROUP BY 1`,
      ),
    );
    const workerOutcomes = Object.fromEntries(outcomes.map((o) => [o.k, o.n]));
    const paid = workerOutcomes['executed/succeeded'] ?? 0;
    if (paid < payments * 0.95)
      throw new Error(`bench worker: only ${paid} of ${payments} paid: ${JSON.stringify(workerOutcomes)}`);

    // Baseline: 2 loops claiming and replaying bare.
    await bulkDueSchedules(runtime.db, ctx, 'SQL', payments);
    const rows = await schedules(runtime.db, 'SQL');
    const bare = createDb(database.url, { max: 10, applicationName: 'paygate-bench-baseline' });
    const claimText = claimTx.find((s) => s.text.includes(CLAIM))!;
    const loop = async (workerId: string) => {
      // What the worker excludes from later claims: schedules that may be due again (none here).
      const seen: string[] = [];
      for (;;) {
        const client = await bare.pool.connect();
        let claimed: { id: string }[];
        try {
          // The same opening statement as db.withSystem.
          await client.query('BEGIN; SET LOCAL ROLE NONE');
          const values = [...claimText.values];
          values[0] = new Date();
          values[3] = workerId;
          values[4] = seen;
          claimed = (await client.query<{ id: string }>(claimText.text, values)).rows;
          await client.query('COMMIT');
        } finally {
          client.release();
        }
        if (claimed.length === 0) return;
        const batch = claimed.map(({ id }) => ({
          s: rows.get(id)!,
          p: {
            id: randomUUID(),
            confirmation_number: `PG-${randomBytes(5).toString('hex').toUpperCase()}`,
            provider_reference: `pi_${randomBytes(12).toString('hex')}`,
          },
        }));
        await replay(bare.pool, perBatch as Captured[], from, identity(batch, workerId));
      }
    };
    const b0 = performance.now();
    const bareCpu0 = readCpu(sources);
    await Promise.all(Array.from({ length: WORKERS }, (_, i) => loop(`bench-bare-${i}`)));
    const baselineSeconds = (performance.now() - b0) / 1000;
    const bareCpu = cpuSince(bareCpu0, sources);
    await bare.close();
    const { rows: bareDone } = await runtime.db.withSystem((client) =>
      client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM scheduled_payments s JOIN invoices i ON i.id = s.invoice_id
         WHERE i.number LIKE 'SQL-%' AND s.status = 'executed' AND i.status = 'paid'`,
      ),
    );
    if (bareDone[0]!.n !== payments)
      throw new Error(`bench worker: the baseline executed ${bareDone[0]!.n} of ${payments}`);
    return {
      workers: WORKERS,
      payments,
      seconds,
      perSecond: payments / seconds,
      outcomes: workerOutcomes,
      baselineSeconds,
      baselinePerSecond: payments / baselineSeconds,
      sqlPerPayment: perPayment(describeTemplate(perBatch), BATCH_SIZE),
      batchSize: BATCH_SIZE,
      cpuPerPayment: { worker: perItem(workerCpu, payments), baseline: perItem(bareCpu, payments) },
    };
  } finally {
    await runtime.close();
    await database.drop();
  }
}
