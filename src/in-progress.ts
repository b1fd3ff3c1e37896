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
}
