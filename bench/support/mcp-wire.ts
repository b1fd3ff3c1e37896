/**
 * The bench's MCP clients. Each agent's session is opened by the MCP SDK's own `Client` over its
 * `StreamableHTTPClientTransport` (initialize, the protocol version it negotiates, `initialized`); the
 * timed `tools/call`s are then, by default, posted by this file at the wire level: the JSON-RPC request
 * with the session's headers (Mcp-Session-Id, MCP-Protocol-Version, the Bearer key) on a kept-alive
 * `node:http` connection, and the answer's envelope read and checked (HTTP 200, JSON, the same id, a
 * result). That is all a Streamable HTTP client does for a call answered with JSON.
 *
 * Why not the SDK's `callTool` for every call: the clients stand in for agents on other machines, yet
 * run on the server's two cores, and the SDK's client-side work per call (its protocol layer, zod
 * validation of the answer, the Web Response) cost the bench process ~0.6 ms of CPU per payment that the
 * bare-SQL side never pays (BENCHMARKS.md). `BENCH_MCP_CLIENT=sdk` uses `callTool` for every call.
 */
import http from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { nodeHttpFetch } from './node-fetch.js';

export interface ToolResult {
  isError?: boolean;
  structuredContent?: unknown;
}

export interface BenchMcpClient {
  callTool(call: { name: string; arguments: Record<string, unknown> }): Promise<ToolResult>;
  close(): Promise<void>;
}

export type McpClientKind = 'wire' | 'sdk';

export function mcpClientKind(): McpClientKind {
  const kind = process.env.BENCH_MCP_CLIENT ?? 'wire';
  if (kind !== 'wire' && kind !== 'sdk') throw new Error(`BENCH_MCP_CLIENT must be wire or sdk, not ${kind}`);
  return kind;
}

export async function connectMcpClient(
  url: string,
  agentKey: string,
  kind: McpClientKind,
): Promise<BenchMcpClient> {
  const endpoint = new URL('/mcp', url);
  const client = new Client({ name: 'paygate-bench', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(endpoint, {
    requestInit: { headers: { Authorization: `Bearer ${agentKey}` } },
    ...(process.env.BENCH_MCP_FETCH === 'undici'
      ? {}
      : { fetch: nodeHttpFetch(new http.Agent({ keepAlive: true })) }),
  });
  await client.connect(transport);
  if (kind === 'sdk') {
    return {
      callTool: (call) => client.callTool(call) as Promise<ToolResult>,
      close: () => client.close(),
    };
  }
  const { sessionId, protocolVersion } = transport;
  if (!sessionId || !protocolVersion)
    throw new Error('bench: the MCP session did not say its id and version');
  const connection = new http.Agent({ keepAlive: true });
  const headers = {
    authorization: `Bearer ${agentKey}`,
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-session-id': sessionId,
    'mcp-protocol-version': protocolVersion,
  };
  let nextId = 1_000_000;
  return {
    callTool: (call) =>
      new Promise<ToolResult>((resolve, reject) => {
        const id = nextId++;
        const request = http.request(endpoint, { method: 'POST', headers, agent: connection }, (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('error', reject);
          response.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            try {
              if (
                response.statusCode !== 200 ||
                !response.headers['content-type']?.startsWith('application/json')
              )
                throw new Error(`HTTP ${response.statusCode} ${response.headers['content-type']}: ${text}`);
              const message = JSON.parse(text) as { id?: unknown; result?: ToolResult; error?: unknown };
              if (message.id !== id) throw new Error(`answer for id ${String(message.id)}, asked ${id}`);
              if (!message.result) throw new Error(`JSON-RPC error ${JSON.stringify(message.error)}`);
              resolve(message.result);
            } catch (error) {
              reject(new Error(`bench: tools/call ${call.name} over MCP: ${(error as Error).message}`));
            }
          });
        });
        request.on('error', reject);
        request.end(JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: call }));
      }),
    close: async () => {
      connection.destroy();
      await client.close();
    },
  };
}
