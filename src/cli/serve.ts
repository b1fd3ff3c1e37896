/**
 * `paygate serve [--port 8787] [--host 127.0.0.1]`: the sidecar (webhooks, approval pages, health,
 * metrics), the MCP endpoint at /mcp and the worker, in one long-running process. The server listens
 * before the runtime starts so that the sandbox, when it serves, knows where to deliver its signed
 * webhooks. `npm start` is `serve --seed-demo`.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import { readDemoCredentials, seedDemo } from '../demo/seed.js';
import { hashesEqual } from '../directory/credentials.js';
import { resolveSecret } from '../directory/encryption.js';
import { RefusedError, UsageError } from '../errors.js';
import { DEFAULT_DRAIN_MS, InProgress } from '../in-progress.js';
import type { McpHttpHandler } from '../mcp/http.js';
import { requestPath } from '../request-path.js';
import type { Runtime } from '../runtime.js';
import type { SidecarApp } from '../sidecar/app.js';
import type { GlobalOptions } from './context.js';

// The serving stack (Express, the MCP SDK, the providers' SDKs through the runtime, the worker) is
// loaded when a process starts serving, not for every `paygate` command: `paygate --help` and the
// humans' commands start in a fraction of the time.
const sidecarModule = () => import('../sidecar/app.js');

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
  /** How long close() lets requests in progress finish (default DEFAULT_DRAIN_MS). */
  drainMs?: number;
}

/**
 * Once no call runs, how long the MCP requests still open get: the answers of finished calls being
 * written, and requests that arrived just before the stop and have not started their call yet.
 */
const ANSWER_FLUSH_MS = 2_000;

/** Counts a request in `work` until its answer is sent or its connection closes. */
function untilAnswered(work: InProgress, req: http.IncomingMessage, res: http.ServerResponse): void {
  // A response queued behind another on a connection that closes never emits 'close' (pipelining).
  const end = work.begin();
  const socket = req.socket;
  const done = () => {
    end();
    res.off('close', done);
    socket.off('close', done);
  };
  res.once('close', done);
  socket.once('close', done);
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
  // Loaded before the port is taken, so a load that fails exits rather than holding the port.
  const [{ createMcpHttpHandler, MCP_PATH }, { startRuntime }, { createSidecarApp }, { createWorker }] =
    await Promise.all([
      import('../mcp/http.js'),
      import('../runtime.js'),
      sidecarModule(),
      import('../worker/index.js'),
    ]);
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
    secureCookies: runtime.config.publicUrl ? new URL(runtime.config.publicUrl).protocol === 'https:' : false,
  });
  // Stopping (close(), on SIGTERM): no new request is taken, calls waiting on a human answer
  // approval_required, and the work in progress finishes before anything it needs is closed. The work is
  // the tool calls themselves, not their HTTP answers (a call goes on after its client hung up or
  // cancelled it), and the other requests being answered (webhooks, pages).
  const stopping = new AbortController();
  const work = new InProgress();
  // The answers to posted MCP requests: once no call runs, those of finished calls are still being
  // written. Waited for briefly only: a call its client cancelled is never answered (the protocol).
  const mcpAnswers = new InProgress();
  const mcp = createMcpHttpHandler(runtime, { shutdownSignal: stopping.signal, calls: work });
  // /mcp is answered without Express (see McpHttpHandler.handle); everything else goes to the sidecar.
  handler = (req, res) => {
    const onMcp = requestPath(req.url) === MCP_PATH;
    if (stopping.signal.aborted) return refuseWhileStopping(res, onMcp);
    // A session's GET event stream lasts as long as the session: it is closed, not waited for.
    if (!onMcp || req.method !== 'GET') untilAnswered(onMcp ? mcpAnswers : work, req, res);
    if (!mcp.handle(req, res)) app(req, res);
  };
  const drained = async (ms: number) => {
    const deadline = Date.now() + ms;
    for (;;) {
      if (!(await work.idleWithin(deadline - Date.now()))) {
        runtime.logger.warn(
          { inProgress: work.size, drainMs: ms },
          'stopping with work still in progress; the reconciler finishes its payments',
        );
        return;
      }
      // No call runs: the answers of finished calls are being written, and a request that arrived
      // just before the stop may still be reading its body or checking its key, its call not started.
      await mcpAnswers.idleWithin(Math.min(ANSWER_FLUSH_MS, deadline - Date.now()));
      // A call that started meanwhile is waited for like the others.
      if (work.size === 0 || Date.now() >= deadline) return;
    }
  };
  // The worker shares this process's runtime; claims are leased in the database, so any number of
  // serve and worker processes can run against one PostgreSQL.
  const stopWorker = new AbortController();
  const workerDone =
    options.worker === false
      ? Promise.resolve()
      : createWorker(runtime)
          .run({ signal: stopWorker.signal })
          .catch((error: unknown) => runtime.logger.error({ err: error }, 'worker stopped'));
  let closing: Promise<void> | undefined;
  return {
    url,
    runtime,
    app,
    mcp,
    server,
    close() {
      closing ??= stop();
      return closing;
    },
  };

  async function stop(): Promise<void> {
    stopping.abort();
    stopWorker.abort();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    await drained(options.drainMs ?? DEFAULT_DRAIN_MS);
    await workerDone;
    await mcp.close();
    server.closeAllConnections();
    await closed;
    await runtime.close();
  }
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'run the MCP endpoint (/mcp), the approval pages, provider webhooks, /healthz, /metrics and the worker',
    )
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
      const urls = { approvals: `${publicUrl.replace(/\/$/, '')}/approvals`, mcp: `${handle.url}/mcp` };
      if (global.json) {
        // One JSON line for programs; the demo's credentials stay in its credentials file.
        process.stdout.write(`${JSON.stringify(urls)}\n`);
      } else {
        process.stdout.write(`approvals: ${urls.approvals}\nmcp: ${urls.mcp}\n`);
        if (opts.seedDemo) process.stdout.write(await demoBanner(handle));
      }
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      // A second signal stops at once; whatever was in progress is the reconciler's.
      const now = () => process.exit(1);
      process.once('SIGINT', now);
      process.once('SIGTERM', now);
      process.stderr.write('stopping: finishing the requests in progress (again to stop at once)\n');
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
 * Desktop user has a page to approve on, unless another paygate (a `paygate serve`, another `paygate
 * mcp`) already listens there: then that one serves the page for the same database. Returns a closer,
 * or null when another paygate serves the page or the public URL is not a loopback address.
 *
 * "Another paygate" must be proven, not assumed: whatever holds the port receives the human's personal
 * access token when they approve, so an agent that binds it first would collect it. The listener must
 * answer a fresh challenge with an HMAC under this installation's secret; otherwise this refuses, and
 * `paygate mcp` exits rather than hand out approve links to a stranger's port.
 */
export async function serveApprovalPageIfFree(runtime: Runtime): Promise<(() => Promise<void>) | null> {
  const publicUrl = new URL(runtime.deps.publicUrl);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(publicUrl.hostname)) return null;
  const secret = await resolveSecret(runtime.config);
  const { createSidecarApp } = await sidecarModule();
  const app = createSidecarApp(runtime, { instrumentGateways: false, healthProofSecret: secret });
  const server = http.createServer(app);
  const port = Number(publicUrl.port || 80);
  const host = publicUrl.hostname === 'localhost' ? '127.0.0.1' : publicUrl.hostname.replace(/[[\]]/g, '');
  const listening = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, host, () => resolve(true));
  });
  if (!listening) {
    if (await listenerIsPaygate(host, port, secret)) {
      runtime.logger.info({ url: publicUrl.origin }, 'another paygate serves the approval page');
      return null;
    }
    throw new RefusedError(
      'approval_page_port_taken',
      "PAYGATE_PUBLIC_URL's port is held by something that is not paygate: approve links would go there",
      `stop whatever listens on ${host}:${port}, or set PAYGATE_PUBLIC_URL to a free loopback port`,
    );
  }
  runtime.logger.info({ url: publicUrl.origin }, 'serving the approval page for this MCP session');
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
}

/**
 * A request that arrives while the server stops: 503 and Retry-After, so the client retries (another
 * process, or this one restarted); a provider redelivers a webhook answered so. On /mcp, a JSON-RPC error.
 */
function refuseWhileStopping(res: http.ServerResponse, onMcp: boolean): void {
  const message = 'paygate is stopping: retry in a moment';
  const [type, body] = onMcp
    ? [
        'application/json; charset=utf-8',
        JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }),
      ]
    : ['text/plain; charset=utf-8', `${message}\n`];
  res.writeHead(503, { 'content-type': type, 'retry-after': '1', connection: 'close' }).end(body);
}

/** Whether the process on host:port answers /healthz's challenge with our secret (see healthProof). */
async function listenerIsPaygate(host: string, port: number, secret: string): Promise<boolean> {
  const challenge = randomBytes(32).toString('hex');
  const origin = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  try {
    const res = await fetch(`${origin}/healthz?challenge=${challenge}`, {
      redirect: 'error',
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) return false;
    const body = (await res.json()) as { proof?: unknown };
    if (typeof body.proof !== 'string') return false;
    const { healthProof } = await sidecarModule();
    return hashesEqual(Buffer.from(healthProof(secret, port, challenge)), Buffer.from(body.proof));
  } catch {
    // Not HTTP, not JSON, no answer in time: not a paygate we can trust with the human's token.
    return false;
  }
}
