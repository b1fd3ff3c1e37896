/**
 * Where a payment's SQL time goes: captures one engine payment's statements (as bench/pay.ts does), then
 * replays them for other invoices at concurrency 1 and 8, timing every statement, and prints the
 * statements by total time with EXPLAIN ANALYZE of the slowest. `node dist/bench/profile-sql.js`.
 */
import { createDb } from '../src/db/pool.js';
import { type PaymentConfirmation, payInvoice } from '../src/payments/pay.js';
import { startRuntime } from '../src/runtime.js';
import { capturePool } from './support/capture.js';
import { openBenchServer } from './support/database.js';
import { benchEnv, removeBenchDataDir } from './support/env.js';
import { capturedRunId, paymentIdentity, replay } from './support/replay.js';
import { mintPayJobs, payInput, seedTenant } from './support/seed.js';
import { runConcurrent } from './support/stats.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

const server = await openBenchServer();
const database = await server.createDatabase('profile');
const runtime = await startRuntime({ databaseUrl: database.url, env: benchEnv() });
try {
  const tenant = await seedTenant(runtime.db, 8);
  const jobs = await mintPayJobs(runtime.deps, tenant, 12, 'P');
  const agent = tenant.agents[0]!;
  const [w, c] = [jobs[0]![0]!, jobs[0]![1]!];
  await payInvoice(runtime.deps, { agentKey: agent.agentKey }, payInput(w.invoice, w.token));
  const capture = capturePool(runtime.db.pool);
  capture.start();
  const captured = (await payInvoice(
    runtime.deps,
    { agentKey: agent.agentKey },
    payInput(c.invoice, c.token),
  )) as PaymentConfirmation;
  const template = capture.stop();
  const idOf = async (approvalId: string) => {
    const { rows } = await runtime.db.withSystem((client) =>
      client.query<{
        token_hash: Buffer;
        invoice_id: string;
        number: string;
        tenant_id: string;
        agent_key_id: string;
        counterparty_id: string;
        payment_method_id: string;
      }>(
        `SELECT a.token_hash, i.id AS invoice_id, i.number, a.tenant_id, a.agent_key_id, i.counterparty_id,
                (SELECT id FROM payment_methods m WHERE m.tenant_id = a.tenant_id LIMIT 1) AS payment_method_id
         FROM approvals a JOIN invoices i ON i.id = (a.params->>'invoice_id')::uuid WHERE a.id = $1`,
        [approvalId],
      ),
    );
    const r = rows[0]!;
    return {
      approvalId,
      tokenHash: r.token_hash,
      invoiceId: r.invoice_id,
      invoiceNumber: r.number,
      tenantId: r.tenant_id,
      agentKeyId: r.agent_key_id,
      counterpartyId: r.counterparty_id,
      paymentMethodId: r.payment_method_id,
    };
  };
  const from = paymentIdentity({
    ...(await idOf(c.approvalId)),
    paymentId: captured.payment_id,
    confirmationNumber: captured.confirmation_number!,
    providerReference: captured.gateway_reference!,
    runId: capturedRunId(template),
  });
  const bare = createDb(database.url, { max: 10 });
  // Time every statement by wrapping the bare pool's clients.
  const timings = new Map<string, { n: number; ms: number }>();
  bare.pool.on('acquire', (client) => {
    const marked = client as unknown as { __timed?: boolean; query: (...a: unknown[]) => Promise<unknown> };
    if (marked.__timed) return;
    marked.__timed = true;
    const original = client.query.bind(client) as (...a: unknown[]) => Promise<unknown>;
    marked.query = async (...args: unknown[]) => {
      const key = String(args[0]).replace(/\s+/g, ' ').slice(0, 110);
      const t0 = performance.now();
      try {
        return await original(...args);
      } finally {
        const e = timings.get(key) ?? { n: 0, ms: 0 };
        e.n++;
        e.ms += performance.now() - t0;
        timings.set(key, e);
      }
    };
  });
  let n = 0;
  const fresh = async (job: { approvalId: string }) =>
    paymentIdentity({
      ...(await idOf(job.approvalId)),
      paymentId: crypto.randomUUID(),
      confirmationNumber: `PG-PROF${String(n++).padStart(6, '0')}`,
      providerReference: `pi_prof_${n}`,
      runId: crypto.randomUUID(),
    });
  for (const concurrency of [1, 8]) {
    timings.clear();
    const queues =
      concurrency === 1 ? [jobs.slice(1).flatMap((q) => q.slice(2, 7))] : jobs.map((q) => q.slice(7));
    const ids = await Promise.all(queues.map((q) => Promise.all(q.map(fresh))));
    const result = await runConcurrent(ids, (to) => replay(bare.pool, template, from, to));
    const sorted = result.latencies.sort((a, b) => a - b);
    console.log(
      `\nconcurrency ${concurrency}: ${sorted.length} payments in ${result.seconds.toFixed(2)} s, p50 ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} ms`,
    );
    for (const [text, t] of [...timings].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12))
      console.log(`${(t.ms / t.n).toFixed(2).padStart(8)} ms avg  x${t.n}  ${text}`);
  }
  // EXPLAIN ANALYZE of every distinct statement of the payment, with the captured parameters, inside a
  // transaction that is rolled back (as paygate_app with the tenant set, like the engine).
  console.log('\nplans (EXPLAIN ANALYZE, rolled back): statement, execution ms, scans');
  const client = await bare.pool.connect();
  try {
    const seen = new Set<string>();
    for (const statement of template) {
      if (/^(BEGIN|COMMIT|SELECT set_config|SELECT pg_advisory)/.test(statement.text)) continue;
      if (seen.has(statement.text)) continue;
      seen.add(statement.text);
      await client.query('BEGIN');
      try {
        await client.query("SELECT set_config('app.tenant_id', $1, true)", [tenant.tenant.id]);
        const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode; 'Execution Time': number }] }>(
          `EXPLAIN (ANALYZE, FORMAT JSON) ${statement.text}`,
          statement.values,
        );
        const plan = rows[0]!['QUERY PLAN'][0];
        const scans: string[] = [];
        const walk = (node: PlanNode) => {
          if (/Scan/.test(node['Node Type']))
            scans.push(
              `${node['Node Type']}${node['Index Name'] ? ` ${node['Index Name']}` : ''} on ${node['Relation Name'] ?? '?'}`,
            );
          for (const child of node.Plans ?? []) walk(child);
        };
        walk(plan.Plan);
        console.log(
          `${plan['Execution Time'].toFixed(3).padStart(8)} ms  ${statement.text.replace(/\s+/g, ' ').slice(0, 70)}  [${scans.join('; ')}]`,
        );
      } catch (error) {
        console.log(`   (not explained: ${(error as Error).message})  ${statement.text.slice(0, 60)}`);
      } finally {
        await client.query('ROLLBACK');
      }
    }
  } finally {
    client.release();
  }
  await bare.close();
} finally {
  await runtime.close();
  await database.drop();
  await server.close();
  removeBenchDataDir();
}
