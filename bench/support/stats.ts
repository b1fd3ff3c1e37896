/** Latency percentiles and a fixed-concurrency driver shared by the benches. */

export function percentile(sortedMs: number[], p: number): number {
  if (sortedMs.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sortedMs.length) - 1;
  return sortedMs[Math.min(sortedMs.length - 1, Math.max(0, rank))]!;
}

export interface RunResult {
  count: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

export interface Timed {
  seconds: number;
  latencies: number[];
}

export function summarize(parts: readonly Timed[]): RunResult {
  const latencies = parts.flatMap((p) => p.latencies).sort((a, b) => a - b);
  const seconds = parts.reduce((sum, p) => sum + p.seconds, 0);
  return {
    count: latencies.length,
    seconds,
    perSecond: latencies.length / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  };
}

/**
 * Run each worker's queue through `work` concurrently (one worker per agent: an approval token belongs to
 * the agent key it was requested by), timing every call and the whole run.
 */
export async function runConcurrent<T>(
  queues: readonly (readonly T[])[],
  work: (item: T, worker: number) => Promise<void>,
): Promise<Timed> {
  const latencies: number[] = [];
  const started = performance.now();
  await Promise.all(
    queues.map(async (queue, worker) => {
      for (const item of queue) {
        const t0 = performance.now();
        await work(item, worker);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { seconds: (performance.now() - started) / 1000, latencies };
}

export const round = (n: number, digits = 1) => Number(n.toFixed(digits));

/**
 * Open loop: each worker starts its items `intervalMs` apart (the workers evenly offset within the
 * interval), whether or not its previous item has answered, so the load offered is fixed and latency is
 * measured from when each item was due, not from when it could start (no coordinated omission).
 */
export async function runPaced<T>(
  queues: readonly (readonly T[])[],
  intervalMs: number,
  work: (item: T, worker: number) => Promise<void>,
): Promise<Timed> {
  const latencies: number[] = [];
  const started = performance.now();
  await Promise.all(
    queues.flatMap((queue, worker) =>
      queue.map(async (item, i) => {
        const due = started + (intervalMs * worker) / queues.length + i * intervalMs;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - performance.now())));
        await work(item, worker);
        latencies.push(performance.now() - due);
      }),
    ),
  );
  return { seconds: (performance.now() - started) / 1000, latencies };
}
