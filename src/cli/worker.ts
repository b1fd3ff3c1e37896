/**
 * `paygate worker`: the background jobs (src/worker/) in a loop until SIGTERM or SIGINT, or one pass
 * with `--once` (for cron and tests). Any number of these may run against one PostgreSQL.
 *
 * Shutdown: the signal stops new claims; the batch in flight finishes its phases (a provider call is
 * never cut in half by us), schedules claimed but not started are released, then the process exits 0.
 * A second signal, or SIGKILL, is a crash, and a crash is safe too: leases expire and the reconciler
 * resolves what was in flight.
 */
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import type { PassSummary } from '../worker/index.js';
import type { CliContext } from './context.js';

type Run = (fn: (ctx: CliContext) => Promise<void>) => Promise<void>;

function describe(s: PassSummary): string {
  return [
    `worker ${s.worker_id}:`,
    `scheduled ${s.scheduled.started} started (${s.scheduled.paid} paid, ${s.scheduled.pending} pending, ${s.scheduled.deferred} deferred, ${s.scheduled.failed} failed);`,
    `reconciled ${s.reconciled.checked} (${s.reconciled.succeeded} succeeded, ${s.reconciled.failed} failed, ${s.reconciled.still_processing} still processing);`,
    `schedules settled ${s.schedules_settled};`,
    `refunds looked up ${s.refunds.looked_up}, re-driven ${s.refunds.redriven}, alerted ${s.refunds.alerted};`,
    `ACH settled ${s.ach_settled};`,
    `approvals expired ${s.approvals_expired};`,
    `idempotency keys pruned ${s.idempotency_keys_pruned};`,
    `errors ${s.errors}`,
  ].join(' ');
}

export function registerWorkerCommands(program: Command, run: Run): void {
  program
    .command('worker')
    .description('run scheduled payments, retries, reconciliation and housekeeping (until SIGTERM)')
    .option('--once', 'one pass over everything due now, print a summary, exit')
    .option('--worker-id <id>', 'name in leases and the audit log (default host:pid)')
    .option('--batch-size <n>', 'due schedules claimed (and run as batches) at a time')
    .action((o: { once?: boolean; workerId?: string; batchSize?: string }) =>
      run(async (ctx) => {
        const batchSize = o.batchSize === undefined ? undefined : Number(o.batchSize);
        if (batchSize !== undefined && (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000))
          throw new UsageError(`--batch-size "${o.batchSize}" must be a whole number from 1 to 10000`);
        // Loaded when the command runs, not for every `paygate` command (see src/cli.ts).
        const [{ startRuntime }, { createWorker }] = await Promise.all([
          import('../runtime.js'),
          import('../worker/index.js'),
        ]);
        const runtime = await startRuntime({
          databaseUrl: ctx.options.databaseUrl,
          dataDir: ctx.options.dataDir,
          applicationName: 'paygate-worker',
        });
        try {
          const worker = createWorker(runtime, { workerId: o.workerId, batchSize });
          if (o.once) {
            const summary = await worker.runOnce();
            ctx.print(summary, describe(summary));
            if (summary.errors > 0) process.exitCode = 1;
            return;
          }
          const controller = new AbortController();
          const stop = () => {
            if (controller.signal.aborted) {
              // A second signal: the operator insists. Leases make this as safe as a crash.
              process.exit(130);
            }
            runtime.logger.info('worker: finishing the batch in flight, then stopping');
            controller.abort();
          };
          process.on('SIGTERM', stop);
          process.on('SIGINT', stop);
          try {
            await worker.run({ signal: controller.signal });
          } finally {
            process.off('SIGTERM', stop);
            process.off('SIGINT', stop);
          }
        } finally {
          await runtime.close();
        }
      }),
    );
}
