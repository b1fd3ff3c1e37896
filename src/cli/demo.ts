/** `paygate demo`: the seed's three requests and a refund through a real MCP client, approved by the named humans. */
import type { Command } from 'commander';
import type { GlobalOptions } from './context.js';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      "run the seed's three requests and a refund through a real MCP client in a temporary sandbox",
    )
    .action(async () => {
      const global = program.opts<GlobalOptions>();
      const { runDemo } = await import('../demo/run.js');
      await runDemo({ dataDir: global.dataDir, out: (line) => process.stdout.write(`${line}\n`) });
    });
}
