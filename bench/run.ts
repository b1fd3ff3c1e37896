/**
 * `npm run bench`: every bench against one PostgreSQL (DATABASE_URL, default the local superuser; the
 * embedded server when none answers), each in a fresh database dropped afterwards. Prints a table and
 * writes the raw numbers to dist/bench-results.json. `node dist/bench/run.js pay webhooks` runs a subset.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { benchNacha } from './nacha.js';
import { benchPay } from './pay.js';
import type { CpuReading } from './support/cpu.js';
import { openBenchServer } from './support/database.js';
import { removeBenchDataDir } from './support/env.js';
import { repoRoot } from './support/paths.js';
import { round } from './support/stats.js';
import { benchWebhooks } from './webhooks.js';
import { benchWorker } from './worker.js';

const cpuLine = (c: CpuReading) => `${c.benchMs} / ${c.serverMs} / ${c.postgresMs}`;
const only = new Set(process.argv.slice(2));
const wanted = (name: string) => only.size === 0 || only.has(name);

const server = await openBenchServer();
const results: Record<string, unknown> = { postgres: { kind: server.kind, version: server.version } };
const lines: string[] = [];
try {
  for (const tenants of ['one', 'per-agent'] as const) {
    const name = tenants === 'one' ? 'pay' : 'pay-tenants';
    if (!wanted(name)) continue;
    const r = await benchPay(server, { tenants });
    results[name] = r;
    lines.push(
      `pay_invoice over MCP (${r.mcpClient} client), ${r.agents} agents in ${r.tenants} tenant(s): ${round(r.mcp.perSecond)} payments/s, p50 ${round(r.mcp.p50Ms)} ms, p99 ${round(r.mcp.p99Ms)} ms`,
      `  paced (open loop) at ${r.paced.offeredPerSecond} payments/s, half that rate: p50 ${round(r.paced.p50Ms)} ms, p99 ${round(r.paced.p99Ms)} ms`,
      `  engine direct: ${round(r.engine.perSecond)}/s, p50 ${round(r.engine.p50Ms)} ms, p99 ${round(r.engine.p99Ms)} ms`,
      `  bare SQL, all the server runs per payment (${r.sqlPerPayment.statements} statements in ${r.sqlPerPayment.transactions} transactions: key check, engine, webhook): ${round(r.baseline.perSecond)}/s, p50 ${round(r.baseline.p50Ms)} ms, p99 ${round(r.baseline.p99Ms)} ms`,
      `  bare SQL, the engine's alone (${r.engineSqlPerPayment.statements} statements in ${r.engineSqlPerPayment.transactions} transactions): ${round(r.engineSql.perSecond)}/s`,
      `  ratio mcp/bare ${round(r.mcp.perSecond / r.baseline.perSecond, 2)} (target >= 0.5, p99 < 25 ms); against the engine's SQL alone ${round(r.mcp.perSecond / r.engineSql.perSecond, 2)}; engine/bare ${round(r.engine.perSecond / r.engineSql.perSecond, 2)}`,
      `  CPU ms per payment (bench process / server / PostgreSQL): mcp ${cpuLine(r.cpuPerPayment.mcp)}; engine ${cpuLine(r.cpuPerPayment.engine)}; bare ${cpuLine(r.cpuPerPayment.baseline)}; engine's SQL bare ${cpuLine(r.cpuPerPayment.engineSql)}`,
      `  peak RSS of the server (${r.server.kind}): ${round(r.server.peakRssMb)} MB (target < 250 MB)`,
      ...(r.server.sqlPerPayment
        ? [
            `  SQL the server ran per MCP payment: ${round(r.server.sqlPerPayment.statements)} statements in ${round(r.server.sqlPerPayment.transactions)} transactions (webhooks, key checks and session setup included)`,
          ]
        : []),
      `  sandbox webhooks the server received: ${JSON.stringify(r.serverWebhooks)}; ${round(100 * r.lateWebhooks)}% of the timed ones after their round's clock stopped (the bare side's are all inside its clock)`,
    );
  }
  if (wanted('webhooks')) {
    const r = await benchWebhooks(server);
    results.webhooks = r;
    lines.push(
      `webhooks, ${r.senders} senders: ${round(r.http.perSecond)} verified events/s, p50 ${round(r.http.p50Ms)} ms, p99 ${round(r.http.p99Ms)} ms`,
      `  bare SQL (${r.sqlPerEvent.statements} statements in ${r.sqlPerEvent.transactions} transactions): ${round(r.baseline.perSecond)}/s`,
      `  ratio ${round(r.http.perSecond / r.baseline.perSecond, 2)} (target >= 0.6)`,
      `  CPU ms per event (bench process / server / PostgreSQL): http ${cpuLine(r.cpuPerEvent.http)}; bare ${cpuLine(r.cpuPerEvent.baseline)}`,
    );
  }
  if (wanted('worker')) {
    const r = await benchWorker(server);
    results.worker = r;
    lines.push(
      `worker, ${r.workers} processes: ${r.payments} due payments in ${round(r.seconds, 2)} s (${round(r.perSecond)}/s; target 10,000 in < 15 s)`,
      `  bare SQL (${round(r.sqlPerPayment.statements, 2)} statements in ${round(r.sqlPerPayment.transactions, 3)} transactions per payment, in batches of ${r.batchSize}): ${round(r.baselineSeconds, 2)} s (${round(r.baselinePerSecond)}/s)`,
      `  ratio ${round(r.perSecond / r.baselinePerSecond, 2)}; outcomes ${JSON.stringify(r.outcomes)}`,
      `  CPU per payment: worker processes ${r.cpuPerPayment.worker.serverMs} ms + PostgreSQL ${r.cpuPerPayment.worker.postgresMs} ms; baseline bench ${r.cpuPerPayment.baseline.benchMs} ms + PostgreSQL ${r.cpuPerPayment.baseline.postgresMs} ms`,
    );
  }
  if (wanted('nacha')) {
    const r = await benchNacha();
    results.nacha = r;
    lines.push(
      `NACHA 10,000 records: read+validate ${round(r.readValidateMBps)} MB/s, write ${round(r.writeMBps)} MB/s`,
    );
  }
} finally {
  await server.close();
  removeBenchDataDir();
}
console.log(lines.join('\n'));
writeFileSync(path.join(repoRoot(), 'dist/bench-results.json'), `${JSON.stringify(results, null, 2)}\n`);
