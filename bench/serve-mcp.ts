/**
 * `paygate serve`'s composition, counting its SQL: one process with the sidecar (webhooks, approval
 * pages), Streamable HTTP at /mcp, and the in-process sandbox delivering its signed webhooks back to the
 * sidecar. The pay bench runs this instead of `paygate serve` with BENCH_SERVER=serve-mcp, to report the
 * statements and transactions the server runs per payment.
 *
 *   node dist/bench/serve-mcp.js DATABASE_URL   (prints `listening <url>` when ready; SIGTERM stops it)
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpHttpHandler } from '../src/mcp/http.js';
import { startRuntime } from '../src/runtime.js';
import { createSidecarApp } from '../src/sidecar/app.js';

const databaseUrl = process.argv[2];
if (!databaseUrl) throw new Error('usage: serve-mcp DATABASE_URL');

let handler: http.RequestListener = (_req, res) => {
  res.statusCode = 503;
  res.end('starting\n');
};
const server = http.createServer((req, res) => handler(req, res));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const runtime = await startRuntime({
  databaseUrl,
  webhookBaseUrl: url,
  publicUrl: url,
  applicationName: 'paygate-serve',
});
// Count the SQL this server runs (statements and transactions), printed when it stops, so the bench can
// say how much SQL one payment costs the server beyond the engine's own (webhooks, key checks).
const sql = { statements: 0, transactions: 0 };
runtime.db.pool.on('acquire', (client) => {
  const marked = client as unknown as { benchCounted?: boolean; query: (...args: unknown[]) => unknown };
  if (marked.benchCounted) return;
  marked.benchCounted = true;
  const original = client.query.bind(client) as (...args: unknown[]) => unknown;
  marked.query = (...args: unknown[]) => {
    const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string }).text;
    if (text?.startsWith('BEGIN')) sql.transactions++;
    else if (text !== 'COMMIT' && text !== 'ROLLBACK') sql.statements++;
    return original(...args);
  };
});
const mcp = createMcpHttpHandler(runtime);
const app = createSidecarApp(runtime);
handler = (req, res) => {
  if (!mcp.handle(req, res)) app(req, res);
};
process.stdout.write(`listening ${url}\n`);

process.once('SIGTERM', async () => {
  server.closeAllConnections();
  server.close();
  await mcp.close();
  await runtime.close();
  process.stdout.write(`sql statements=${sql.statements} transactions=${sql.transactions}\n`);
  process.exit(0);
});
