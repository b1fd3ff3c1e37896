/**
 * How long a stopping process lets its work in progress finish: a payment's provider call (20 s
 * timeout for Stripe, 30 s for PayPal) and its phase 3. One still running after it is cut off and left
 * to the reconciler, which asks the provider (nothing is lost, nothing charged twice).
 */
export const DEFAULT_DRAIN_MS = 30_000;

/**
 * Work this process has in progress, so that a stopping server waits for the work itself: the tool
 * calls it runs (a call goes on after its client hung up or cancelled it, and the money may be moving)
 * and the other requests it is answering. `idle()` resolves when none is left.
 */
export class InProgress {
  #count = 0;
  #waiters: (() => void)[] = [];

  get size(): number {
    return this.#count;
  }

  /** Counts one piece of work; the returned `end` may be called any number of times, it counts once. */
  begin(): () => void {
    this.#count++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      if (--this.#count === 0) for (const wake of this.#waiters.splice(0)) wake();
    };
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    const end = this.begin();
    try {
      return await work();
    } finally {
      end();
    }
  }

  idle(): Promise<void> {
    return this.#count === 0 ? Promise.resolve() : new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Whether the work is done within `ms` (waits no longer). */
  async idleWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, ms));
    });
    try {
      return await Promise.race([this.idle().then(() => true), late]);
    } finally {
      clearTimeout(timer);
    }
  }
}
