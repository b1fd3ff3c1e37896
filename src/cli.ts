#!/usr/bin/env node
/**
 * The `paygate` command. Exit codes other programs rely on: 0 success; 1 an action refused or failed
 * by the rules (reason on stderr); 2 bad usage or a malformed value (named on stderr).
 */
import { Command, CommanderError } from 'commander';
import { registerAchCommands } from './cli/ach.js';
import { registerAdminCommands } from './cli/admin.js';
import { registerApprovalCommands } from './cli/approvals.js';
import { CliContext, type GlobalOptions } from './cli/context.js';
import { registerDatabaseCommands } from './cli/database.js';
import { registerDemoCommand } from './cli/demo.js';
import { registerMcpCommands } from './cli/mcp.js';
import { registerSandboxCommands } from './cli/sandbox.js';
import { registerServeCommand, serveApprovalPageIfFree } from './cli/serve.js';
import { registerWorkerCommands } from './cli/worker.js';
import { ConfigError } from './config.js';
import { RefusedError, UsageError } from './errors.js';
import { MoneyError } from './money.js';

export const EXIT_OK = 0;
export const EXIT_REFUSED = 1;
export const EXIT_USAGE = 2;

function fail(code: number, message: string): void {
  process.stderr.write(`paygate: ${message}\n`);
  process.exitCode = code;
}

/** Map an error to its exit code and a message that never includes a stack trace or a secret. */
function report(error: unknown): void {
  if (error instanceof UsageError || error instanceof MoneyError || error instanceof ConfigError) {
    fail(EXIT_USAGE, error.message);
  } else if (error instanceof RefusedError) {
    fail(EXIT_REFUSED, error.nextStep ? `${error.message} (${error.nextStep})` : error.message);
  } else if (error instanceof CommanderError) {
    // Help asked for (--help, `help CMD`) is success. Help shown because no command was given
    // (`paygate`, `paygate invoice`) goes to stderr with commander's exit code 1: that is bad usage,
    // and a script that forgot the subcommand must not read it as done.
    const asked =
      error.code === 'commander.helpDisplayed' ||
      error.code === 'commander.version' ||
      (error.code === 'commander.help' && error.exitCode === 0);
    process.exitCode = asked ? EXIT_OK : EXIT_USAGE;
  } else {
    const name = error instanceof Error ? error.name : 'Error';
    const message = error instanceof Error ? error.message : String(error);
    fail(EXIT_REFUSED, `${name}: ${message}`);
  }
}

export function buildProgram(): Command {
  const program = new Command('paygate')
    .description('agents pay, schedule and refund invoices; humans approve every action first')
    .option('--database-url <url>', 'PostgreSQL URL (or DATABASE_URL); default: the embedded server')
    .option('--data-dir <dir>', 'data directory (or PAYGATE_DATA_DIR; default ./.paygate)')
    .option('--json', 'machine-readable output')
    .exitOverride()
    .showHelpAfterError();

  const run = async (fn: (ctx: CliContext) => Promise<void>) => {
    const ctx = new CliContext(program.opts<GlobalOptions>());
    try {
      await fn(ctx);
    } finally {
      await ctx.close();
    }
  };

  registerDatabaseCommands(program, run);
  registerAdminCommands(program, run);
  registerWorkerCommands(program, run);
  registerSandboxCommands(program);
  registerApprovalCommands(program, run);
  registerAchCommands(program, run);
  registerMcpCommands(program, run, { serveApprovalPage: serveApprovalPageIfFree });
  registerServeCommand(program);
  registerDemoCommand(program);
  // Every subcommand inherits the parent's error handling so that usage errors exit 2.
  const inherit = (command: Command) => {
    for (const sub of command.commands) {
      sub.exitOverride();
      inherit(sub);
    }
  };
  inherit(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    report(error);
  }
}

await main(process.argv);
