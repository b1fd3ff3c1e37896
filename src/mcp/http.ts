/**
 * Streamable HTTP at /mcp, for `paygate serve`: the agent key as a Bearer token on every request,
 * Host and Origin checked against loopback and PAYGATE_PUBLIC_URL (DNS-rebinding protection), and one
 * McpServer per session, bound to the agent key that opened it. A session answers each request with an
 * event stream only when its client can take a URL elicitation, and with plain JSON otherwise.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import express from 'express';
import { authenticateAgent } from '../directory/agent-keys.js';
import { RefusedError, requestErrorStatus } from '../errors.js';
import type { Caller } from '../payments/context.js';
import { requestPath } from '../request-path.js';
import { createMcpServer, type McpRuntime, type McpServerOptions } from './server.js';

export const MCP_PATH = '/mcp';
const BODY_LIMIT = '1mb';

export interface McpHttpOptions extends McpServerOptions {
  /** Extra host names (without port) allowed in Host and Origin, besides loopback and the public URL's. */
  allowedHosts?: string[];
  /** A session with no request for this long is closed (clients that vanish never send DELETE). */
  sessionIdleMs?: number;
  /**
   * Open sessions per agent key. A new one past it closes the key's least recently used session with no
   * request in progress, whose client is then answered 404 and, as the protocol says, starts a new one:
   * an agent that restarts without closing its sessions keeps working, and no key can hold the server's
   * memory (~50 KB a session) with sessions it never closes. When every one of them has a call in
   * progress (one waiting on a human, say) the new session is refused (429).
   * Default 64.
   */
  maxSessionsPerKey?: number;
}

/** Longer than the approval wait, so a session waiting on a human is never swept. */
export const DEFAULT_SESSION_IDLE_MS = 30 * 60 * 1000;
const DEFAULT_MAX_SESSIONS_PER_KEY = 64;

export interface McpHttpHandler {
  /**
   * A plain `node:http` listener for /mcp (POST, GET and DELETE): true when the request is on /mcp and
   * is being answered, false (the request untouched) for any other path, which the caller passes on:
   *
   *   http.createServer((req, res) => mcp.handle(req, res) || sidecarApp(req, res));
   *
   * Not an Express middleware on purpose: Express swaps the prototypes of every request and response it
   * sees, and that alone cost each MCP call about 1 ms of the server's CPU (BENCHMARKS.md).
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** Open sessions (for health and tests). */
  sessionCount(): number;
  /** Close every session's transport and server. */
  close(): Promise<void>;
}

interface Session {
  transport: StreamableHTTPServerTransport;
  caller: Caller;
  lastSeen: number;
  /** When it was last used, in the order of uses (the least recently used is closed first for room). */
  lastUse: number;
  /**
   * Posted requests being answered now (a call, perhaps waiting on a human): such a session is never
   * closed for room or idleness. A GET event stream does not count: a client holds one open for the
   * session's life whether or not it still uses the session.
   */
  busy: number;
  /** JSON-RPC ids of the posted requests being answered. */
  inFlight: Set<string>;
  /** Taken out of the session map (why): closed once `busy` is back to 0. */
  retiring?: string;
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

/** A request on /mcp once the JSON body parser has read it. */
type McpRequest = IncomingMessage & { body?: unknown };

function jsonRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  const body = JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null });
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(body);
}

function bearerOf(req: IncomingMessage): string | undefined {
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
  function checkHostAndOrigin(req: IncomingMessage, res: ServerResponse): boolean {
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
  async function authenticate(req: IncomingMessage, res: ServerResponse): Promise<Caller['agentKey'] | null> {
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

  const maxSessionsPerKey = options.maxSessionsPerKey ?? DEFAULT_MAX_SESSIONS_PER_KEY;
  let uses = 0;

  /** Closes a session taken out of `sessions` (for room, idleness or DELETE) once its calls have answered. */
  function retire(session: Session, why: string): void {
    session.retiring = why;
    if (session.busy > 0) return; // its last call's end closes it
    session
      .close()
      .catch((error) => runtime.logger.warn({ err: error, why }, 'closing an mcp session failed'));
  }

  /** The key's sessions beyond the limit that a new one would push out: least recently used, idle first. */
  function roomFor(agentKeyId: string): [string, Session][] | null {
    const own = [...sessions].filter(([, s]) => s.caller.agentKey.id === agentKeyId);
    const excess = own.length - maxSessionsPerKey + 1;
    if (excess <= 0) return [];
    const idle = own.filter(([, s]) => s.busy === 0).sort(([, a], [, b]) => a.lastUse - b.lastUse);
    return idle.length < excess ? null : idle.slice(0, excess);
  }

  /** JSON-RPC ids of the requests in a posted body (one message or a batch). */
  function requestIds(body: unknown): string[] {
    const messages = Array.isArray(body) ? body : [body];
    return messages.flatMap((m) =>
      m && typeof m === 'object' && 'method' in m && 'id' in m
        ? [JSON.stringify((m as { id: unknown }).id)]
        : [],
    );
  }

  async function handle(req: McpRequest, res: ServerResponse): Promise<void> {
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
      session.lastUse = ++uses;
      // Ended while a call runs, the SDK's transport would drop that call's answer (the money may have
      // moved): the session is ended here and closed once its calls have answered.
      if (req.method === 'DELETE' && session.busy > 0) {
        sessions.delete(sessionId);
        retire(session, 'deleted by its client');
        res.writeHead(200).end();
        return;
      }
      // An id still in use on the session would have the SDK answer one of the two requests with the
      // other's result and leave the other unanswered (the protocol forbids reusing an id in a session).
      const ids = req.method === 'POST' ? requestIds(req.body) : [];
      const reused = ids.find((id) => session.inFlight.has(id));
      if (reused !== undefined) {
        jsonRpcError(
          res,
          400,
          -32600,
          `Request id ${reused} is already used by a request in progress on this session`,
        );
        return;
      }
      const posted = req.method === 'POST' ? 1 : 0;
      session.busy += posted;
      for (const id of ids) session.inFlight.add(id);
      try {
        await session.transport.handleRequest(req, res, req.body);
      } finally {
        session.busy -= posted;
        for (const id of ids) session.inFlight.delete(id);
        if (posted) {
          session.lastSeen = Date.now();
          session.lastUse = ++uses;
        }
        if (session.retiring !== undefined && session.busy === 0) retire(session, session.retiring);
      }
      return;
    }
    if (req.method !== 'POST' || !isInitializeRequest(req.body)) {
      jsonRpcError(res, 400, -32000, 'Bad request: send initialize first, then the Mcp-Session-Id header');
      return;
    }
    if (!roomFor(agentKey.id)) {
      jsonRpcError(
        res,
        429,
        -32000,
        `This agent key has ${maxSessionsPerKey} open sessions, each with a call in progress: wait for one to finish, or close one (DELETE ${MCP_PATH} with its Mcp-Session-Id)`,
      );
      return;
    }
    const caller: Caller = { agentKey };
    const server = createMcpServer(runtime, caller, options);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: !declaresUrlElicitation(req.body),
      // Room is made only for a session that exists: an initialize the transport refuses closes nothing.
      onsessioninitialized: (id) => {
        for (const [oldId, old] of roomFor(agentKey.id) ?? []) {
          sessions.delete(oldId);
          retire(old, 'over the per-key session limit');
        }
        sessions.set(id, {
          transport,
          caller,
          lastSeen: Date.now(),
          lastUse: ++uses,
          busy: 0,
          inFlight: new Set(),
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
        if (session.busy > 0 || now - session.lastSeen < idleMs) continue;
        sessions.delete(id);
        retire(session, 'idle');
      }
    },
    Math.min(idleMs, 60_000),
  );
  sweeper.unref();

  // body-parser's JSON reader (what express.json is) on its own: it needs no Express app around it.
  const readJson = express.json({ limit: BODY_LIMIT });

  /** The JSON body parser's refusals (malformed, too large) as JSON-RPC errors, before any key is checked. */
  function bodyRefused(err: unknown, res: ServerResponse): void {
    const status = requestErrorStatus(err);
    if (status === 413) jsonRpcError(res, 413, -32600, `Request body too large (limit ${BODY_LIMIT})`);
    else if (status === 415)
      jsonRpcError(res, 415, -32600, 'Unsupported charset or encoding: send UTF-8 JSON');
    else if (status) jsonRpcError(res, 400, -32700, 'Parse error: the body is not valid JSON');
    else failed(err, res);
  }

  function failed(error: unknown, res: ServerResponse): void {
    runtime.logger.error({ err: error }, 'mcp http request failed');
    if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal error');
  }

  return {
    handle(req, res) {
      if (requestPath(req.url) !== MCP_PATH) return false;
      // Express caught a handler's synchronous throw; with no Express around this, one would end the process.
      try {
        readJson(
          req as Parameters<typeof readJson>[0],
          res as Parameters<typeof readJson>[1],
          (err?: unknown) => {
            if (err) return bodyRefused(err, res);
            handle(req, res).catch((error: unknown) => failed(error, res));
          },
        );
      } catch (error) {
        failed(error, res);
      }
      return true;
    },
    sessionCount: () => sessions.size,
    async close() {
      clearInterval(sweeper);
      const all = [...sessions.values()];
      sessions.clear();
      await Promise.allSettled(all.map((s) => s.close()));
    },
  };
}
