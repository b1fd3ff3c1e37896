/** Shared by the MCP tests: a real SDK Client and small readers of tool results. */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, ClientCapabilities } from '@modelcontextprotocol/sdk/types.js';
import { expect } from 'vitest';
import { createLogger } from '../../src/config.js';
import { createMcpHttpHandler, type McpHttpHandler, type McpHttpOptions } from '../../src/mcp/http.js';
import type { EngineDeps } from '../../src/payments/context.js';

export const TOOL_NAMES = [
  'cancel_scheduled_payment',
  'get_payment_status',
  'list_approvals',
  'list_invoices',
  'list_payment_methods',
  'pay_invoice',
  'refund_payment',
  'schedule_payment',
];

export const MONEY_MOVING = ['pay_invoice', 'refund_payment', 'schedule_payment'];

export interface StructuredError {
  code: string;
  message: string;
  retryable: boolean;
  next_step: string;
}

/** The structured content of a successful call; fails the test on an error result. */
export function ok<T = Record<string, unknown>>(result: unknown): T {
  const r = result as CallToolResult;
  expect(r.isError, JSON.stringify(r.structuredContent)).toBeFalsy();
  // The same JSON travels as text for clients that do not read structuredContent.
  expect(JSON.parse((r.content[0] as { text: string }).text)).toEqual(r.structuredContent);
  return r.structuredContent as T;
}

/** The `{error}` of an isError result; fails the test on a success. */
export function failed(result: unknown): StructuredError {
  const r = result as CallToolResult;
  expect(r.isError, JSON.stringify(r.structuredContent)).toBe(true);
  const body = r.structuredContent as { error: StructuredError };
  expect(JSON.parse((r.content[0] as { text: string }).text)).toEqual(body);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'next_step', 'retryable']);
  expect(body.error.message).not.toMatch(/\bat .+:\d+:\d+/); // no stack frames
  return body.error;
}

export interface HttpServer {
  url: string;
  handler: McpHttpHandler;
  close(): Promise<void>;
}

/** The handler `paygate serve` answers /mcp with, on a loopback server of the test's own. */
export async function startHttp(deps: EngineDeps, options: McpHttpOptions = {}): Promise<HttpServer> {
  const handler = createMcpHttpHandler({ deps, logger: createLogger('silent') }, options);
  const server = createServer((req, res) => {
    if (!handler.handle(req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    handler,
    async close() {
      await handler.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

export async function httpClient(
  url: string,
  key: string,
  capabilities: ClientCapabilities = {},
): Promise<Client> {
  const client = new Client({ name: 'paygate-test', version: '1.0.0' }, { capabilities });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

/**
 * A loopback port nothing listens on right now, for a process started afterwards to listen on. Chosen
 * below the kernel's ephemeral range: a port the kernel handed out (to a listener on port 0, or as the
 * local port of any outgoing connection, of which a test run makes thousands) can be taken again by
 * the kernel before the child binds it, which made `paygate mcp` find its approval page's port held.
 */
export async function freePort(): Promise<number> {
  const [ephemeralLow] = (
    await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '32768')
  )
    .trim()
    .split(/\s+/)
    .map(Number);
  const below = Math.max(2000, (ephemeralLow ?? 32768) - 1);
  for (;;) {
    const port = 1024 + Math.floor(Math.random() * (below - 1024));
    const server = net.createServer();
    const free = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!free) continue;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  }
}
