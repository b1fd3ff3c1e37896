/**
 * `paygate serve [--port 8787] [--host 127.0.0.1]`: the sidecar (webhooks, approval pages, health,
 * metrics), the MCP endpoint at /mcp and the worker, in one long-running process. The server listens
 * before the runtime starts so that the sandbox, when it serves, knows where to deliver its signed
 * webhooks. `npm start` is `serve --seed-demo`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import express from 'express';
import { readDemoCredentials, seedDemo } from '../demo/seed.js';
import { UsageError } from '../errors.js';
import { createMcpHttpHandler, type McpHttpHandler } from '../mcp/http.js';
import { type Runtime, startRuntime } from '../runtime.js';
import { createSidecarApp, type SidecarApp } from '../sidecar/app.js';
import { createWorker } from '../worker/index.js';
import type { GlobalOptions } from './context.js';

export interface ServeOptions {
  port?: number;
  host?: string;
  dataDir?: string;
  databaseUrl?: string;
  allowEmbeddedLive?: boolean;
  /** Seed the demo tenant on first start (sandbox only). */
  seedDemo?: boolean;
  /** Run the worker in this process (default true; several serve processes share the work). */
  worker?: boolean;
}

export interface ServeHandle {
  url: string;
  runtime: Runtime;
  app: SidecarApp;
  mcp: McpHttpHandler;
  server: http.Server;
  close(): Promise<void>;
}

export async function startServe(options: ServeOptions = {}): Promise<ServeHandle> {
  const host = options.host ?? '127.0.0.1';
  // Until the app exists every request gets a 503 rather than a hang.
  let handler: http.RequestListener = (_req, res) => {
    res.statusCode = 503;
    res.end('starting\n');
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8787, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  let runtime: Runtime;
  try {
    runtime = await startRuntime({
      dataDir: options.dataDir,
      databaseUrl: options.databaseUrl,
      webhookBaseUrl: url,
      // Links in approval_required answers point here unless PAYGATE_PUBLIC_URL says otherwise.
      publicUrl: process.env.PAYGATE_PUBLIC_URL ? undefined : url,
      allowEmbeddedLive: options.allowEmbeddedLive,
      applicationName: 'paygate-serve',
    });
  } catch (error) {
    server.close();
    throw error;
  }
  if (options.seedDemo && runtime.config.sandbox) await seedDemo(runtime.db, runtime.config);
  const app = createSidecarApp(runtime, {
    secureCookies: runtime.config.publicUrl?.startsWith('https://') ?? false,
  });
  const mcp = createMcpHttpHandler(runtime);
  // The MCP router answers /mcp only; everything else falls through to the sidecar.
  const root = express();
  root.disable('x-powered-by');
  root.use(mcp.router);
  root.use(app);
  handler = root;
  // The worker shares this process's runtime; claims are leased in the database, so any number of
  // serve and worker processes can run against one PostgreSQL.
  const stopWorker = new AbortController();
  const workerDone =
    options.worker === false
      ? Promise.resolve()
      : createWorker(runtime)
          .run({ signal: stopWorker.signal })
          .catch((error: unknown) => runtime.logger.error({ err: error }, 'worker stopped'));
  return {
    url,
    runtime,
    app,
    mcp,
    server,
    async close() {
      stopWorker.abort();
      await workerDone;
      await mcp.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await runtime.close();
    },
  };
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the approval pages, provider webhooks, /healthz and /metrics')
    .option('--port <port>', 'port to listen on', '8787')
    .option(
      '--host <host>',
      'address to listen on (loopback unless you put a TLS proxy in front)',
      '127.0.0.1',
    )
    .option('--allow-embedded-live', 'allow live provider keys on the embedded database')
    .option('--seed-demo', 'create the demo tenant on first start (sandbox mode only)')
    .action(async (opts: { port: string; host: string; allowEmbeddedLive?: boolean; seedDemo?: boolean }) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new UsageError(`--port "${opts.port}" is not a port number`);
      }
      const global = program.opts<GlobalOptions>();
      const handle = await startServe({
        port,
        host: opts.host,
        dataDir: global.dataDir,
        databaseUrl: global.databaseUrl,
        allowEmbeddedLive: opts.allowEmbeddedLive,
        seedDemo: opts.seedDemo,
      });
      const publicUrl = handle.runtime.deps.publicUrl;
      process.stdout.write(`approvals: ${publicUrl.replace(/\/$/, '')}/approvals\n`);
      process.stdout.write(`mcp: ${handle.url}/mcp\n`);
      if (opts.seedDemo) process.stdout.write(await demoBanner(handle));
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await handle.close();
    });
}

/** What a newcomer needs after `npm start`: who they are, the agent key, and how to connect Claude. */
async function demoBanner(handle: ServeHandle): Promise<string> {
  const { config } = handle.runtime;
  if (!config.sandbox) return '\nprovider keys are set: no demo tenant is seeded\n';
  const demo = await readDemoCredentials(config.dataDir);
  if (!demo)
    return '\nthe demo tenant exists but its credentials file is gone; create users with `paygate user add`\n';
  return [
    '',
    `sandbox mode: Stripe and PayPal are emulated on loopback; no real money moves.`,
    `demo tenant "${demo.tenant}" with invoices INV-2025-001..003 (data in ${config.dataDir})`,
    `  admin     ${demo.admin.email}  personal access token: ${demo.admin.token}`,
    `  approver  ${demo.approver.email}  personal access token: ${demo.approver.token}`,
    `  agent key: ${demo.agentKey}`,
    '',
    'connect Claude Code:  export PAYGATE_AGENT_KEY=<the agent key> && cp mcp.json .mcp.json && claude',
    `over HTTP:            ${handle.url}/mcp with "Authorization: Bearer <the agent key>"`,
    'then ask Claude: "pay invoice INV-2025-001 by card" and approve at the link it gives you.',
    '',
  ].join('\n');
}

/**
 * For `paygate mcp` (stdio): serve the approval pages on PAYGATE_PUBLIC_URL's loopback port so a Claude
 * Desktop user has a page to approve on, unless another process (a `paygate serve`, another `paygate
 * mcp`) already listens there: then that one serves the page for the same database. Returns a closer,
 * or null when the port is taken or the public URL is not a loopback address.
 */
export async function serveApprovalPageIfFree(runtime: Runtime): Promise<(() => Promise<void>) | null> {
  const publicUrl = new URL(runtime.deps.publicUrl);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(publicUrl.hostname)) return null;
  const app = createSidecarApp(runtime, { instrumentGateways: false });
  const server = http.createServer(app);
  const listening = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(
      Number(publicUrl.port || 80),
      publicUrl.hostname === 'localhost' ? '127.0.0.1' : publicUrl.hostname.replace(/[[\]]/g, ''),
      () => resolve(true),
    );
  });
  if (!listening) return null;
  runtime.logger.info({ url: publicUrl.origin }, 'serving the approval page for this MCP session');
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
}
