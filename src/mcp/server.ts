/**
 * The McpServer for one authenticated agent: every tool from tools/, the approval protocol, and URL
 * elicitation where the client declares it. Transports (stdio, Streamable HTTP) build one per session.
 */
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { CallToolResult, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import { type PaygateTool, TOOLS, type ToolContext } from '../../tools/index.js';
import type { Logger } from '../config.js';
import { RefusedError, UsageError } from '../errors.js';
import type { InProgress } from '../in-progress.js';
import type { Caller, EngineDeps } from '../payments/context.js';
import type { ApprovalRequired } from '../payments/pay.js';
import {
  DEFAULT_APPROVAL_POLL_MS,
  DEFAULT_APPROVAL_WAIT_MS,
  type Decision,
  waitForDecision,
} from './elicitation.js';
import { errorResult, toolErrorResult, toolResult } from './results.js';

export const SERVER_NAME = 'paygate';
export const SERVER_VERSION = '0.1.0';

/** What the server needs from a Runtime (tests pass their own engine deps). */
export interface McpRuntime {
  deps: EngineDeps;
  logger: Logger;
}

export interface McpServerOptions {
  /** How long a money-moving call waits for the human after a URL elicitation. */
  approvalWaitMs?: number;
  /** How often the approval is re-read while waiting. */
  approvalPollMs?: number;
  /**
   * Runs before every tool call; a refusal it throws is the call's answer. stdio proves the key again
   * here (Streamable HTTP does on every request, before the call reaches the server).
   */
  beforeEachCall?: (caller: Caller, tool: PaygateTool) => Promise<void>;
  /**
   * Aborted when the process begins to stop: a call waiting on a human stops waiting and answers
   * approval_required (nothing has moved; the human can still approve and the agent call again).
   */
  shutdownSignal?: AbortSignal;
  /** Counts every tool call while it runs, for a stopping server to wait on (src/in-progress.ts). */
  calls?: InProgress;
}

const INSTRUCTIONS = `paygate pays, schedules and refunds invoices for your tenant. No money moves until a human approves the exact action.
Money-moving tools (pay_invoice, schedule_payment, refund_payment) first answer status "approval_required" with approve_url: ask the human to approve there, then call again with the same arguments and the approval_token they give you. Never invent a token. If your client supports URL elicitation, the server opens the page itself and finishes the call after the human approves.
Amounts are decimal strings ("500.00") with an ISO currency, exactly as list_invoices shows them. Errors come back with error.code, error.next_step and error.retryable.`;

function isApprovalRequired(value: object): value is ApprovalRequired {
  return (value as { status?: unknown }).status === 'approval_required';
}

/** The caller object is shared with the transport, which may refresh its agent key between requests. */
export function createMcpServer(
  runtime: McpRuntime,
  caller: Caller,
  options: McpServerOptions = {},
): McpServer {
  const server = new McpServer(
    { name: SERVER_NAME, version: SERVER_VERSION },
    { capabilities: { tools: {} }, instructions: INSTRUCTIONS },
  );
  for (const tool of TOOLS) register(server, runtime, caller, tool, options);
  answerSdkErrorsInOurShape(server);
  return server;
}

/**
 * The SDK answers what fails before our handler runs (arguments that do not fit a tool's input schema,
 * an unknown tool) as bare text, through one method of McpServer. DESIGN.md promises every error as
 * {error: {code, message, retryable, next_step}}, so that method is replaced on this instance: a number
 * sent as `amount` is the most common agent mistake, and the agent needs a code and a next step.
 * It is not public API; test/mcp/tool-contract.test.ts fails if an SDK upgrade renames it.
 */
function answerSdkErrorsInOurShape(server: McpServer): void {
  const sdk = server as unknown as { createToolError?: (message: string) => CallToolResult };
  if (typeof sdk.createToolError !== 'function') return;
  sdk.createToolError = (message: string) => {
    const text = message.replace(/^MCP error -?\d+: /, '');
    const unknownTool = /^Tool .* not found/.test(text);
    return toolErrorResult({
      code: unknownTool ? 'unknown_tool' : 'invalid_input',
      message: text,
      retryable: false,
      next_step: unknownTool
        ? 'call tools/list for the tools this server has'
        : "fix the arguments the message names (their types and formats are in the tool's input schema) and call again",
    });
  };
}

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/**
 * PostgreSQL refuses the NUL character in text, so an argument holding one would fail in the database as
 * an internal (and retryable) error: refused here as what it is, bad input, before anything runs.
 */
function refuseNulCharacters(args: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(args ?? {})) {
    if (typeof value === 'string' && value.includes('\u0000'))
      throw new UsageError(
        `${name} contains a NUL character (U+0000)`,
        'invalid_input',
        `send ${name} as plain text`,
      );
  }
}

function register(
  server: McpServer,
  runtime: McpRuntime,
  caller: Caller,
  tool: PaygateTool,
  options: McpServerOptions,
): void {
  const call = async (args: Record<string, unknown>, extra: Extra) => {
    const ctx: ToolContext = { deps: runtime.deps, caller };
    try {
      refuseNulCharacters(args);
      await options.beforeEachCall?.(caller, tool);
      const answer = await tool.handler(ctx, args as never);
      if (
        tool.movesMoney &&
        isApprovalRequired(answer) &&
        server.server.getClientCapabilities()?.elicitation?.url
      ) {
        return await approveThroughPage(server, runtime, ctx, tool, args, answer, extra, options);
      }
      return toolResult(answer);
    } catch (error) {
      return errorResult(error, runtime.logger, tool.name);
    }
  };
  server.registerTool(tool.name, tool.config, ((args: Record<string, unknown>, extra: Extra) =>
    options.calls ? options.calls.run(() => call(args, extra)) : call(args, extra)) as never);
}

/**
 * URL elicitation: open the approval page on the human's side, wait for their decision in the
 * database, and on approval complete the call with the approval id as server-held evidence.
 */
async function approveThroughPage(
  server: McpServer,
  runtime: McpRuntime,
  ctx: ToolContext,
  tool: PaygateTool,
  args: Record<string, unknown>,
  ask: ApprovalRequired,
  extra: Extra,
  options: McpServerOptions,
): Promise<CallToolResult> {
  // The wait ends when the client cancels the call or the process begins to stop.
  const signal = options.shutdownSignal
    ? AbortSignal.any([extra.signal, options.shutdownSignal])
    : extra.signal;
  // One budget for the whole wait: the user's consent to open the page and the human's decision.
  const deadline = Date.now() + (options.approvalWaitMs ?? DEFAULT_APPROVAL_WAIT_MS);
  const elicitationId = randomUUID();
  let opened: boolean;
  try {
    const answer = await server.server.elicitInput(
      {
        mode: 'url',
        elicitationId,
        url: ask.approve_url,
        message: `Approval needed: ${ask.summary}. Open the page, sign in as yourself and approve or reject.`,
      },
      { signal, timeout: Math.max(1, deadline - Date.now()) },
    );
    // accept means "the user agreed to open the page", nothing more; content is ignored.
    opened = answer.action === 'accept';
  } catch (error) {
    runtime.logger.warn(
      { err: error, tool: tool.name },
      'url elicitation failed; answering approval_required',
    );
    opened = false;
  }
  if (!opened) return toolResult(ask);

  const progressToken = extra._meta?.progressToken;
  const decision: Decision = await waitForDecision(
    runtime.deps.db,
    ctx.caller.agentKey.tenantId,
    ask.approval_id,
    {
      timeoutMs: Math.max(0, deadline - Date.now()),
      pollMs: options.approvalPollMs ?? DEFAULT_APPROVAL_POLL_MS,
      signal,
      // Progress keeps a client that resets its request timeout on progress from giving up on us.
      onTick: async (tick) => {
        if (progressToken === undefined) return;
        await extra
          .sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: tick, message: 'waiting for the human to approve' },
          })
          .catch(() => {});
      },
    },
  );
  const complete = server.server.createElicitationCompletionNotifier(elicitationId);
  try {
    switch (decision) {
      case 'approved': {
        const done = await tool.handler({ ...ctx, server: { approvalId: ask.approval_id } }, args as never);
        return toolResult(done);
      }
      case 'rejected':
        throw new RefusedError(
          'approval_rejected',
          `the human rejected approval ${ask.approval_id}`,
          'do not retry; ask the human what they want instead',
        );
      case 'expired':
        throw new RefusedError(
          'approval_expired',
          `approval ${ask.approval_id} expired before a human approved it`,
          'call again to request a new approval',
        );
      case 'consumed':
        throw new RefusedError(
          'approval_token_used',
          `approval ${ask.approval_id} was already used by another call`,
          'call get_payment_status for the invoice',
        );
      case 'timeout':
        // The human may still approve on the page; the ordinary protocol takes over from here.
        return toolResult(ask);
      default: {
        const unreachable: never = decision;
        throw new Error(`unknown decision ${String(unreachable)}`);
      }
    }
  } finally {
    if (decision !== 'timeout') await complete().catch(() => {});
  }
}
