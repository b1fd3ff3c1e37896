/**
 * `paygate mcp`: one agent over stdin/stdout. The agent key comes from PAYGATE_AGENT_KEY and is
 * authenticated before the transport starts, so a bad key fails at launch with a clear message rather
 * than on the first tool call, and again before every call. Logs go to stderr (stdout is the protocol).
 */
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { authenticateAgent } from '../directory/agent-keys.js';
import { DEFAULT_DRAIN_MS, InProgress } from '../in-progress.js';
import type { Caller } from '../payments/context.js';
import { createMcpServer, type McpRuntime, type McpServerOptions } from './server.js';

/** Serve until stdin closes. Throws the authentication refusal (agent_key_required, invalid_agent_key, ...). */
export async function serveStdio(
  runtime: McpRuntime,
  agentKeySecret: string | undefined,
  options: McpServerOptions = {},
): Promise<void> {
  const secret = agentKeySecret?.trim();
  const caller: Caller = { agentKey: await authenticateAgent(runtime.deps.db, secret) };
  // Calls are counted, so that when the client goes (stdin closes, as the MCP spec has a client stop its
  // server) a call already running, a payment at its provider, finishes before the runtime closes.
  const calls = new InProgress();
  const stopping = new AbortController();
  const server = createMcpServer(runtime, caller, {
    ...options,
    calls,
    shutdownSignal: stopping.signal,
    // And the key again before every read, so a key an admin disables while this process runs is
    // refused from its next call, as over HTTP. A money-moving call is proven by its admission, which
    // reads the key as it is now (caps included) and puts a disabled key's refusal on the audit log.
    beforeEachCall: async (current, tool) => {
      if (tool.movesMoney) return;
      current.agentKey = await authenticateAgent(runtime.deps.db, secret);
    },
  });
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    process.stdin.once('end', resolve);
    process.stdin.once('close', resolve);
    transport.onclose = () => resolve();
  });
  await server.connect(transport);
  runtime.logger.info({ agent: caller.agentKey.name, key_prefix: caller.agentKey.keyPrefix }, 'mcp on stdio');
  await closed;
  stopping.abort();
  if (!(await calls.idleWithin(DEFAULT_DRAIN_MS)))
    runtime.logger.warn(
      { inProgress: calls.size },
      'stopping with a call still running; the reconciler finishes it',
    );
  // A finished call's answer is written after the call returns: let it reach stdout first.
  await new Promise((resolve) => setImmediate(resolve));
  await server.close();
}
