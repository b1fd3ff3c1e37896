/**
 * `paygate serve [--port 8787] [--host 127.0.0.1]`: the sidecar (webhooks, approval pages, health,
 * metrics) in one long-running process. The server listens before the runtime starts so that the
 * sandbox, when it serves, knows where to deliver its signed webhooks.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { type Runtime, startRuntime } from '../runtime.js';
import { createSidecarApp, type SidecarApp } from '../sidecar/app.js';
import type { GlobalOptions } from './context.js';

export interface ServeOptions {
  port?: number;
  host?: string;
  dataDir?: string;
  databaseUrl?: string;
  allowEmbeddedLive?: boolean;
}

export interface ServeHandle {
  url: string;
  runtime: Runtime;
  app: SidecarApp;
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
  const app = createSidecarApp(runtime, {
    secureCookies: runtime.config.publicUrl?.startsWith('https://') ?? false,
  });
  handler = app;
  return {
    url,
    runtime,
    app,
    server,
    async close() {
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
    .action(async (opts: { port: string; host: string; allowEmbeddedLive?: boolean }) => {
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
      });
      const publicUrl = handle.runtime.deps.publicUrl;
      process.stdout.write(`approvals: ${publicUrl.replace(/\/$/, '')}/approvals\n`);
      process.stdout.write(`mcp: ${handle.url}/mcp\n`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await handle.close();
    });
}
