/**
 * `paygate mcp`: the MCP server on stdio for one agent (Claude Desktop, Claude Code). The agent key
 * comes from PAYGATE_AGENT_KEY; a missing, unknown or disabled key ends the process at launch with the
 * reason on stderr and exit 1.
 */
import type { Command } from 'commander';
import { authenticateAgent } from '../directory/agent-keys.js';
import { RefusedError, UsageError } from '../errors.js';
import { DEFAULT_APPROVAL_WAIT_MS } from '../mcp/elicitation.js';
import type { Runtime } from '../runtime.js';
import type { CliContext } from './context.js';

type Run = (fn: (ctx: CliContext) => Promise<void>) => Promise<void>;

/**
 * Serves the approval page on loopback for the duration of `paygate mcp` when no other paygate process
 * does (so approve_url works with stdio alone). Returns a closer, or null when another process already
 * serves it. src/cli.ts passes serve's (src/cli/serve.ts).
 */
export type ApprovalPageHook = (runtime: Runtime) => Promise<(() => Promise<void>) | null>;

export interface McpCommandHooks {
  serveApprovalPage?: ApprovalPageHook;
}

/** `source` names where the value came from, so a bad one in the environment can be found. */
function waitMsFrom(value: string | undefined, source: string): number {
  if (value === undefined || value === '') return DEFAULT_APPROVAL_WAIT_MS;
  if (!/^\d{1,6}$/.test(value))
    throw new UsageError(
      `${source} "${value}" must be a whole number of seconds (0 to 999999; default 600)`,
      'invalid_input',
    );
  return Number(value) * 1000;
}

export function registerMcpCommands(program: Command, run: Run, hooks: McpCommandHooks = {}): void {
  program
    .command('mcp')
    .description('serve the MCP tools on stdio for the agent whose key is in PAYGATE_AGENT_KEY')
    .option(
      '--approval-wait <seconds>',
      'how long a call waits for the human after opening the approval page through URL elicitation (or PAYGATE_MCP_APPROVAL_WAIT_SECONDS; default 600)',
    )
    .action((opts: { approvalWait?: string }) =>
      run(async (ctx) => {
        const approvalWaitMs =
          opts.approvalWait !== undefined
            ? waitMsFrom(opts.approvalWait, '--approval-wait')
            : waitMsFrom(process.env.PAYGATE_MCP_APPROVAL_WAIT_SECONDS, 'PAYGATE_MCP_APPROVAL_WAIT_SECONDS');
        const key = process.env.PAYGATE_AGENT_KEY?.trim();
        // Claude Code passes an unset ${VAR} through literally; say so rather than "not valid".
        if (key?.startsWith('${')) {
          throw new RefusedError(
            'agent_key_required',
            `PAYGATE_AGENT_KEY reached paygate unexpanded (${key.slice(0, 40)})`,
            'export PAYGATE_AGENT_KEY before starting the MCP client, or write the key into the env of mcp.json',
          );
        }
        // A human's token where the agent runs lets the agent approve its own requests (an agent with a
        // shell reads its MCP server's environment): refuse to serve rather than run that way.
        if (process.env.PAYGATE_USER_TOKEN) {
          throw new RefusedError(
            'human_token_in_agent_environment',
            "PAYGATE_USER_TOKEN (a human's personal access token) is set in the MCP server's environment, where the agent can read it",
            'unset it in the shell or config that starts the agent; humans approve from their own terminal or the approval page',
          );
        }
        // Fail fast on a bad key, before the sandbox and the pool start: the launcher shows stderr.
        await authenticateAgent(await ctx.db(), key);
        // Loaded when the command runs, not for every `paygate` command (see src/cli.ts).
        const [{ startRuntime }, { serveStdio }] = await Promise.all([
          import('../runtime.js'),
          import('../mcp/stdio.js'),
        ]);
        const runtime = await startRuntime({
          databaseUrl: ctx.options.databaseUrl,
          dataDir: ctx.options.dataDir,
          applicationName: 'paygate-mcp',
        });
        let closePage: (() => Promise<void>) | null = null;
        try {
          closePage = (await hooks.serveApprovalPage?.(runtime)) ?? null;
          await serveStdio(runtime, process.env.PAYGATE_AGENT_KEY, { approvalWaitMs });
        } finally {
          await closePage?.();
          await runtime.close();
        }
      }),
    );
}
