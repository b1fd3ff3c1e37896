/**
 * Fault injection shared by the sandbox emulators: the failures a payments client must survive, on
 * demand, so each one has a test instead of a hope.
 *
 * Two ways to ask for one:
 * - per request, a header the emulator reads: `X-Sandbox-Fault: latency=200`, `500`, `429`,
 *   `429;retry_after=2`, `timeout_after_charge` or `timeout_after_charge=5000` (answer after 5 s);
 * - per test, a queue: `faults.next('stripe', { kind: 'http_500', times: 2 })`, consumed by the next
 *   matching requests to that emulator (SDKs cannot always add a header, the queue always works).
 * A header wins over the queue and does not consume it.
 *
 * What each fault means, for every emulator:
 * - latency: wait `latencyMs`, then handle the request normally (a slow network: the provider has not
 *   seen the request yet, so its idempotency key is free meanwhile);
 * - slow_processing: the provider has the request and works on it for `latencyMs`, or (queued in-process)
 *   until `until` settles, with its idempotency key taken meanwhile: another request with the same key
 *   answers Stripe's 409 "another in-progress request" (Stripe emulator);
 * - http_500: answer the provider's 500 error body without acting (nothing charged);
 * - http_429: answer the provider's rate-limit error (with Retry-After when `retryAfterSeconds`) without acting;
 * - stale_search (Stripe only): its search answers as if recent objects were not indexed yet (an empty
 *   result), as Stripe's search documents it may for a while after a write; a queued one waits for a
 *   search request whatever its `match` says, and the PayPal emulator refuses it (PayPal has no search);
 * - timeout_after_charge: act (the charge or refund is made and recorded in the ledger), then never
 *   answer, or answer only after `hangMs`, so the client times out while the money moved. This is the
 *   hardest case: the client must ask the provider before it retries, or it pays twice.
 */
import type { LedgerProvider } from './ledger.js';

export type FaultKind =
  | 'latency'
  | 'slow_processing'
  | 'http_500'
  | 'http_429'
  | 'stale_search'
  | 'timeout_after_charge';

export interface Fault {
  kind: FaultKind;
  /** latency: how long to wait before handling the request; slow_processing: how long handling it takes. */
  latencyMs?: number;
  /**
   * slow_processing, queued only: handling ends when this settles (or after latencyMs, whichever is
   * first), so a test holds a request in flight for exactly as long as it needs, not for a guessed time.
   */
  until?: Promise<unknown>;
  /** http_429: the Retry-After the emulator sends. */
  retryAfterSeconds?: number;
  /** timeout_after_charge: answer after this long; absent means never (until the client gives up). */
  hangMs?: number;
}

export interface QueuedFault extends Fault {
  /** How many matching requests this fault applies to; default 1. */
  times?: number;
  /** Only requests that match: method (e.g. 'POST') and a path prefix (e.g. '/v1/payment_intents'). */
  match?: { method?: string; path?: string };
}

export interface FaultRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** The X-Sandbox-Fault header's value, if the request had one. */
  header?: string | undefined;
}

export interface FiredFault extends Fault {
  provider: LedgerProvider;
  method: string;
  path: string;
  source: 'header' | 'queue';
}

export const FAULT_HEADER = 'x-sandbox-fault';

/** Parses an X-Sandbox-Fault header; throws on a value it does not know (a typo must not pass silently). */
export function parseFaultHeader(value: string): Fault {
  const [head = '', ...params] = value.trim().split(';');
  const [name = '', arg] = head.split('=');
  const number = (text: string | undefined, what: string): number | undefined => {
    if (text === undefined || text === '') return undefined;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${FAULT_HEADER}: ${what} must be a whole number`);
    return n;
  };
  switch (name.trim()) {
    case 'latency':
      return { kind: 'latency', latencyMs: number(arg, 'latency') ?? 0 };
    case 'slow_processing':
      return { kind: 'slow_processing', latencyMs: number(arg, 'slow_processing') ?? 0 };
    case '500':
    case 'http_500':
      return { kind: 'http_500' };
    case '429':
    case 'http_429': {
      const retryAfter = params.map((p) => p.split('=')).find(([k]) => k?.trim() === 'retry_after');
      return { kind: 'http_429', retryAfterSeconds: number(retryAfter?.[1], 'retry_after') };
    }
    case 'stale_search':
      return { kind: 'stale_search' };
    case 'timeout_after_charge':
      return { kind: 'timeout_after_charge', hangMs: number(arg, 'timeout_after_charge') };
    default:
      throw new Error(
        `${FAULT_HEADER}: unknown fault "${value}"; use latency=MS, slow_processing=MS, 500, 429[;retry_after=S], stale_search or timeout_after_charge[=MS]`,
      );
  }
}

export class Faults {
  readonly #queues = new Map<LedgerProvider, QueuedFault[]>();
  readonly #fired: FiredFault[] = [];

  /** Queue a fault for the next `times` matching requests to that provider's emulator. */
  next(provider: LedgerProvider, fault: QueuedFault): void {
    if (fault.kind === 'stale_search' && provider !== 'stripe')
      throw new Error(`faults.next: stale_search is a Stripe fault (${provider} has no search)`);
    const times = fault.times ?? 1;
    if (!Number.isInteger(times) || times < 1)
      throw new Error('faults.next: times must be a positive integer');
    const queue = this.#queues.get(provider) ?? [];
    queue.push({ ...fault, times });
    this.#queues.set(provider, queue);
  }

  /**
   * Called by an emulator for each request: the fault to apply, if any. The header wins; otherwise the
   * first queued fault that matches is used once.
   */
  take(provider: LedgerProvider, request: FaultRequest): Fault | undefined {
    if (request.header) {
      const fault = parseFaultHeader(request.header);
      if (fault.kind === 'stale_search' && provider !== 'stripe')
        throw new Error(`${FAULT_HEADER}: stale_search is a Stripe fault (${provider} has no search)`);
      this.#fired.push({ ...fault, provider, method: request.method, path: request.path, source: 'header' });
      return fault;
    }
    const queue = this.#queues.get(provider) ?? [];
    const index = queue.findIndex(
      (f) =>
        (f.match?.method === undefined || f.match.method.toUpperCase() === request.method.toUpperCase()) &&
        (f.match?.path === undefined || request.path.startsWith(f.match.path)) &&
        // Only a search can answer stale; any other request would use it up doing nothing.
        (f.kind !== 'stale_search' || request.path.endsWith('/search')),
    );
    if (index === -1) return undefined;
    const queued = queue[index]!;
    queued.times = (queued.times ?? 1) - 1;
    if (queued.times <= 0) queue.splice(index, 1);
    const { times: _times, match: _match, ...fault } = queued;
    this.#fired.push({ ...fault, provider, method: request.method, path: request.path, source: 'queue' });
    return fault;
  }

  /** Queued faults not yet used (a test can assert its fault really fired). */
  pending(provider: LedgerProvider): number {
    return (this.#queues.get(provider) ?? []).reduce((n, f) => n + (f.times ?? 1), 0);
  }

  /** Faults applied so far, in order. */
  fired(provider?: LedgerProvider): FiredFault[] {
    return this.#fired
      .filter((f) => provider === undefined || f.provider === provider)
      .map((f) => ({ ...f }));
  }

  clear(provider?: LedgerProvider): void {
    if (provider === undefined) {
      this.#queues.clear();
      this.#fired.length = 0;
    } else {
      this.#queues.delete(provider);
      const others = this.#fired.filter((f) => f.provider !== provider);
      this.#fired.splice(0, this.#fired.length, ...others);
    }
  }
}

export function createFaults(): Faults {
  return new Faults();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** How long a slow_processing fault keeps its request: `until`, else `latencyMs`, else not at all. */
export async function processingDelay(fault: Fault): Promise<void> {
  if (fault.until) {
    let timer: NodeJS.Timeout | undefined;
    const limit =
      fault.latencyMs === undefined
        ? undefined
        : new Promise<void>((resolve) => {
            timer = setTimeout(resolve, fault.latencyMs);
          });
    await Promise.race([
      fault.until.then(
        () => undefined,
        () => undefined,
      ),
      ...(limit ? [limit] : []),
    ]);
    clearTimeout(timer);
    return;
  }
  await sleep(fault.latencyMs ?? 0);
}
