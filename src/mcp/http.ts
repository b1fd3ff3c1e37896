/**
 * Streamable HTTP at /mcp, for `paygate serve`: the agent key as a Bearer token on every request,
 * Host and Origin checked against loopback and PAYGATE_PUBLIC_URL (DNS-rebinding protection), and one
 * McpServer per session, bound to the agent key that opened it. A session answers each request with an
 * event stream only when its client can take a URL elicitation, and with plain JSON otherwise.
 */
import { randomUUID } from 'node:crypto';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { authenticateAgent } from '../directory/agent-keys.js';
import { RefusedError, requestErrorStatus } from '../errors.js';
import type { Caller } from '../payments/context.js';
import { createMcpServer, type McpRuntime, type McpServerOptions } from './server.js';

export const MCP_PATH = '/mcp';
const BODY_LIMIT = '1mb';

export interface McpHttpOptions extends McpServerOptions {
  /** Extra host names (without port) allowed in Host and Origin, besides loopback and the public URL's. */
  allowedHosts?: string[];
  /** A session with no request for this long is closed (clients that vanish never send DELETE). */
  sessionIdleMs?: number;
}

/** Longer than the approval wait, so a session waiting on a human is never swept. */
export const DEFAULT_SESSION_IDLE_MS = 30 * 60 * 1000;

export interface McpHttpHandler {
  /** Mount with `app.use(handler.router)`: it answers POST, GET and DELETE on /mcp. */
  router: Router;
  /** Open sessions (for health and tests). */
  sessionCount(): number;
  /** Close every session's transport and server. */
  close(): Promise<void>;
}

interface Session {
  transport: StreamableHTTPServerTransport;
  caller: Caller;
  lastSeen: number;
  close(): Promise<void>;
}

const LOOPBACK = ['127.0.0.1', 'localhost', '[::1]', '::1'];

function hostnameOf(hostHeader: string): string | null {
  try {
    return new URL(`http://${hostHeader}`).hostname.toLowerCase();
  } catch {
    return null;
  }
}

function jsonRpcError(res: Response, status: number, code: number, message: string): void {
  res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });
}

function bearerOf(req: Request): string | undefined {
  const header = req.headers.authorization;
  const match = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return match?.[1];
}

/**
 * Whether the client's initialize declares URL elicitation: the only case in which the server sends
 * anything in the middle of a call (the elicitation and the progress notifications of the wait; see
 * server.ts). Every other session is answered with plain JSON, which costs both sides less per call
 * than an event stream; a stream would carry nothing but the answer.
 */
function declaresUrlElicitation(initialize: unknown): boolean {
  const params = (initialize as { params?: { capabilities?: { elicitation?: { url?: unknown } } } }).params;
  return params?.capabilities?.elicitation?.url !== undefined;
}

export function createMcpHttpHandler(runtime: McpRuntime, options: McpHttpOptions = {}): McpHttpHandler {
  const allowed = new Set([
    ...LOOPBACK,
    ...(options.allowedHosts ?? []).map((h) => h.toLowerCase()),
    new URL(runtime.deps.publicUrl).hostname.toLowerCase(),
  ]);
  const sessions = new Map<string, Session>();

  /** DNS rebinding: a browser page on another origin must not reach this server through a DNS trick. */
  function checkHostAndOrigin(req: Request, res: Response): boolean {
    const host = req.headers.host ? hostnameOf(req.headers.host) : null;
    if (!host || !allowed.has(host)) {
      jsonRpcError(res, 403, -32000, 'Host not allowed');
      return false;
    }
    const origin = req.headers.origin;
    if (origin !== undefined) {
      let originHost: string | null;
      try {
        originHost = new URL(origin).hostname.toLowerCase();
      } catch {
        originHost = null;
      }
      if (!originHost || !allowed.has(originHost)) {
        jsonRpcError(res, 403, -32000, 'Origin not allowed');
        return false;
      }
    }
    return true;
  }

  /** Every request proves the key again, so a key disabled mid-session stops working at once. */
  async function authenticate(req: Request, res: Response): Promise<Caller['agentKey'] | null> {
    try {
      return await authenticateAgent(runtime.deps.db, bearerOf(req));
    } catch (error) {
      if (error instanceof RefusedError) {
        const status = error.code === 'agent_key_disabled' ? 403 : 401;
        if (status === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="paygate"');
        jsonRpcError(res, status, -32001, `${error.message}: ${error.nextStep ?? ''}`.trim());
        return null;
      }
      throw error;
    }
  }

  async function handle(req: Request, res: Response): Promise<void> {
    if (!checkHostAndOrigin(req, res)) return;
    const agentKey = await authenticate(req, res);
    if (!agentKey) return;
    const sessionId = req.headers['mcp-session-id'];
    if (typeof sessionId === 'string') {
      const session = sessions.get(sessionId);
      if (!session) {
        jsonRpcError(res, 404, -32001, 'Session not found; initialize a new one');
        return;
      }
      // A session belongs to the key that opened it; another key cannot ride on it.
      if (session.caller.agentKey.id !== agentKey.id) {
        jsonRpcError(res, 403, -32001, 'This session belongs to another agent key');
        return;
      }
      session.caller.agentKey = agentKey;
      session.lastSeen = Date.now();
      await session.transport.handleRequest(req, res, req.body);
      return;
    }
    if (req.method !== 'POST' || !isInitializeRequest(req.body)) {
      jsonRpcError(res, 400, -32000, 'Bad request: send initialize first, then the Mcp-Session-Id header');
      return;
    }
    const caller: Caller = { agentKey };
    const server = createMcpServer(runtime, caller, options);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: !declaresUrlElicitation(req.body),
      onsessioninitialized: (id) => {
        sessions.set(id, {
          transport,
          caller,
          lastSeen: Date.now(),
          close: async () => {
            await transport.close();
            await server.close();
          },
        });
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  }

  const idleMs = options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS;
  const sweeper = setInterval(
    () => {
      const now = Date.now();
      for (const [id, session] of sessions) {
        if (now - session.lastSeen < idleMs) continue;
        sessions.delete(id);
        session
          .close()
          .catch((error) => runtime.logger.warn({ err: error }, 'closing an idle mcp session failed'));
      }
    },
    Math.min(idleMs, 60_000),
  );
  sweeper.unref();

  const router = express.Router();
  router.use(MCP_PATH, express.json({ limit: BODY_LIMIT }));
  router.all(MCP_PATH, async (req, res) => {
    try {
      await handle(req, res);
    } catch (error) {
      runtime.logger.error({ err: error }, 'mcp http request failed');
      if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal error');
    }
  });

  // The JSON body parser's refusals (malformed, too large) as JSON-RPC errors, before any key is checked:
  // never Express's default page, which prints the stack outside production.
  router.use(MCP_PATH, (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    const status = requestErrorStatus(err);
    if (status === 413) return jsonRpcError(res, 413, -32600, `Request body too large (limit ${BODY_LIMIT})`);
    if (status === 415)
      return jsonRpcError(res, 415, -32600, 'Unsupported charset or encoding: send UTF-8 JSON');
    if (status) return jsonRpcError(res, 400, -32700, 'Parse error: the body is not valid JSON');
    runtime.logger.error({ err }, 'mcp http request failed');
    jsonRpcError(res, 500, -32603, 'Internal error');
  });

  return {
    router,
    sessionCount: () => sessions.size,
    async close() {
      clearInterval(sweeper);
      const all = [...sessions.values()];
      sessions.clear();
      await Promise.allSettled(all.map((s) => s.close()));
    },
  };
}
