/**
 * Our one retry policy for provider calls. SDK-level retries are off everywhere, so this is the only
 * place a provider write is repeated, and it repeats it with the SAME operation (hence the same
 * idempotency key, derived from our payment or refund id), never a new one.
 *
 * Rules (DESIGN.md "On failure"):
 * - only a GatewayError whose `retryable` is true is retried (api_error, rate_limited, or whatever the
 *   provider flagged with Stripe-Should-Retry); every other error is thrown at once;
 * - at most `maxAttempts` (3) attempts, exponential backoff with jitter between them (cockatiel's
 *   decorrelated-jitter generator), never shorter than the provider's Retry-After;
 * - network_timeout means the provider may have acted: before anything else we ask it (`checkOutcome`,
 *   i.e. gateway.retrieve). If it knows the payment, that outcome is the answer and nothing is retried.
 *   If it has no record, retrying with the same key is safe. If we cannot ask (no checkOutcome, or the
 *   question fails too) the original network_timeout is thrown: the outcome stays unknown and the
 *   reconciler resolves it later, by asking, never by paying again.
 *
 * cockatiel's own RetryPolicy sleeps with a private setTimeout and has no hook to ask between attempts,
 * so the loop is ours and only the backoff arithmetic is the library's; `sleep` is injectable so a test
 * observes every delay without waiting for it.
 */
import { ExponentialBackoff, type IBackoff, type IBackoffFactory } from 'cockatiel';
import { GatewayError } from './types.js';

/** Three attempts: enough to ride out a blip, few enough that a human hears about an outage quickly. */
export const DEFAULT_MAX_ATTEMPTS = 3;
/** First delay around half a second; the jitter spreads a fleet of workers that failed together. */
export const DEFAULT_INITIAL_DELAY_MS = 500;
/** A provider asking for more than this is treated as an outage: we stop and let the worker retry later. */
export const DEFAULT_MAX_DELAY_MS = 30_000;

export interface RetryAttemptInfo {
  /** The attempt that just failed, 1-based. */
  attempt: number;
  error: GatewayError;
  /** How long we wait before the next attempt. */
  delayMs: number;
}

export interface RetryOptions<T> {
  maxAttempts?: number;
  /** Backoff arithmetic; default cockatiel's ExponentialBackoff with decorrelated jitter. */
  backoff?: IBackoffFactory<unknown>;
  /** Upper bound for any single wait, including a Retry-After the provider asks for. */
  maxDelayMs?: number;
  /** Injectable for tests; default a real timer. */
  sleep?: (ms: number) => Promise<void>;
  /**
   * After a network_timeout: ask the provider what became of the operation. A value is the outcome
   * (returned as the result, no retry); null means the provider has no record (retry is safe).
   */
  checkOutcome?: () => Promise<T | null>;
  /** Called before each wait; for logs and tests. */
  onRetry?: (info: RetryAttemptInfo) => void;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs `operation` (given the 1-based attempt number) under the policy above. The operation must
 * carry the same idempotency key on every attempt; this function cannot check that, the gateways do.
 */
export async function withRetry<T>(
  operation: (attempt: number) => Promise<T>,
  options: RetryOptions<T> = {},
): Promise<T> {
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
  const sleep = options.sleep ?? realSleep;
  let backoff: IBackoff<unknown> | IBackoffFactory<unknown> =
    options.backoff ??
    new ExponentialBackoff({ initialDelay: DEFAULT_INITIAL_DELAY_MS, maxDelay: maxDelayMs });

  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (!(error instanceof GatewayError)) throw error;

      if (error.code === 'network_timeout') {
        if (!options.checkOutcome) throw error;
        let known: T | null;
        try {
          known = await options.checkOutcome();
        } catch {
          // We could not learn the outcome: retrying now could pay twice if the provider did act and
          // our key has expired, so stop with the original "outcome unknown".
          throw error;
        }
        if (known !== null) return known;
        // The provider has no record: the request never arrived. Retrying is safe (same key).
      } else if (!error.retryable) {
        throw error;
      }

      if (attempt >= maxAttempts) throw error;

      const step: IBackoff<unknown> = backoff.next(undefined);
      backoff = step;
      const hintMs = (error.details.retryAfterSeconds ?? 0) * 1000;
      if (hintMs > maxDelayMs) throw error;
      const delayMs = Math.min(Math.max(Math.round(step.duration), hintMs), maxDelayMs);
      options.onRetry?.({ attempt, error, delayMs });
      await sleep(delayMs);
    }
  }
}
