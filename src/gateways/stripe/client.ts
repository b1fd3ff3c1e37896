/**
 * The Stripe gateway: our requests -> stripe-node calls; Stripe's answers -> mapping.ts.
 *
 * Every write carries OUR idempotency key, derived from our own row id (`pay:<paymentId>`,
 * `refund:<refundId>`), so a retry after a crash or a timeout can never charge twice: Stripe replays
 * the first result for 24 hours. stripe-node's own retries are off (`maxNetworkRetries: 0`) so the only
 * retry policy is ours (../retry.ts), which asks Stripe for the outcome before retrying after a
 * timeout. (stripe-node still retries once on a closed keep-alive socket even with retries off; our
 * key makes that safe too.)
 *
 * Without a secret key the SDK is pointed at the loopback sandbox with its host/port/protocol options,
 * so it runs unmodified there.
 */
import Stripe from 'stripe';
import { SANDBOX_STRIPE_SECRET_KEY } from '../../sandbox/stripe/constants.js';
import { type RetryOptions, withRetry } from '../retry.js';
import {
  type Gateway,
  GatewayError,
  type PaymentOutcome,
  type PayRequest,
  type RefundOutcome,
  type RefundRequest,
} from '../types.js';
import {
  isStripeErrorLike,
  METADATA,
  mapPaymentIntent,
  mapRefund,
  mapStripeError,
  stripeAmountProblem,
  toStripeAmount,
} from './mapping.js';

/**
 * A payment call waits at most this long. Long enough for a slow issuer (Stripe's own p99 is seconds),
 * short enough that a stuck call becomes "outcome unknown" and is resolved by asking, not by waiting.
 */
export const DEFAULT_TIMEOUT_MS = 20_000;

export interface StripeGatewayOptions {
  /** A real key (sk_test_/sk_live_/rk_). Absent: the sandbox at `sandboxUrl`. */
  secretKey?: string;
  /** The sandbox emulator's base URL (http://127.0.0.1:PORT). Overrides Stripe's host when set. */
  sandboxUrl?: string;
  timeoutMs?: number;
  /** Retry policy knobs; `sleep` is injectable so tests observe the backoff without waiting. */
  retry?: Pick<RetryOptions<unknown>, 'maxAttempts' | 'backoff' | 'maxDelayMs' | 'onRetry'>;
  sleep?: (ms: number) => Promise<void>;
}

/** Our ids become Stripe search query literals: only these characters, so no quoting bug can exist. */
const SAFE_ID = /^[A-Za-z0-9_-]{1,200}$/;

export function payIdempotencyKey(paymentId: string): string {
  return `pay:${paymentId}`;
}

export function refundIdempotencyKey(refundId: string): string {
  return `refund:${refundId}`;
}

function stripeConfig(options: StripeGatewayOptions): { key: string; config: Stripe.StripeConfig } {
  const config: Stripe.StripeConfig = {
    maxNetworkRetries: 0,
    timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    telemetry: false,
    appInfo: { name: 'paygate' },
  };
  if (options.sandboxUrl) {
    const url = new URL(options.sandboxUrl);
    config.host = url.hostname;
    config.port = url.port || (url.protocol === 'https:' ? 443 : 80);
    config.protocol = url.protocol === 'https:' ? 'https' : 'http';
  }
  const key = options.secretKey ?? (options.sandboxUrl ? SANDBOX_STRIPE_SECRET_KEY : undefined);
  if (!key) {
    throw new GatewayError(
      'configuration_error',
      'Stripe needs STRIPE_SECRET_KEY, or the sandbox URL when running without provider keys.',
      'stripe',
    );
  }
  return { key, config };
}

export function createStripeGateway(options: StripeGatewayOptions): Gateway {
  const { key, config } = stripeConfig(options);
  const stripe = new Stripe(key, config);
  const retryBase = { ...options.retry, ...(options.sleep ? { sleep: options.sleep } : {}) };

  /** Runs one SDK call and turns any stripe-node error into our GatewayError. */
  async function call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      if (isStripeErrorLike(error)) throw mapStripeError(error);
      throw error;
    }
  }

  async function retrieveOnce(lookup: {
    paymentId: string;
    providerReference?: string;
    amount?: { amountMinor: number; currency: string };
  }): Promise<PaymentOutcome | null> {
    if (lookup.providerReference) {
      try {
        const intent = await call(() =>
          stripe.paymentIntents.retrieve(lookup.providerReference!, { expand: ['payment_method'] }),
        );
        return mapPaymentIntent(intent);
      } catch (error) {
        if (error instanceof GatewayError && error.details.providerCode === 'resource_missing') return null;
        throw error;
      }
    }
    if (!SAFE_ID.test(lookup.paymentId)) {
      throw new GatewayError(
        'configuration_error',
        'payment id has characters a Stripe search cannot hold',
        'stripe',
      );
    }
    // Search by our metadata, never a create: this is the path after a crash before the pi_ id was
    // stored. Stripe's search index lags writes (usually under a minute), so "not found" right after a
    // timeout is not proof of absence; that is why a retry after it still uses the same idempotency key.
    const result = await call(() =>
      stripe.paymentIntents.search({
        query: `metadata['${METADATA.paymentId}']:'${lookup.paymentId}'`,
        expand: ['data.payment_method'],
        limit: 10,
      }),
    );
    // Only PaymentIntents for our amount: the metadata that found them is editable in the dashboard.
    const expected = lookup.amount;
    const ours = expected
      ? result.data.filter(
          (intent) =>
            intent.currency.toUpperCase() === expected.currency &&
            intent.amount === toStripeAmount(expected.amountMinor, expected.currency),
        )
      : result.data;
    if (ours.length === 0) return null;
    // One PaymentIntent per payment (one idempotency key); if someone made more, the best news wins so
    // a succeeded charge is never reported as failed and charged again.
    const rank = (status: string) => (status === 'succeeded' ? 0 : status === 'processing' ? 1 : 2);
    const best = [...ours].sort((a, b) => rank(a.status) - rank(b.status) || b.created - a.created)[0]!;
    return mapPaymentIntent(best);
  }

  return {
    provider: 'stripe',

    async pay(request: PayRequest): Promise<PaymentOutcome> {
      if (request.rail === 'paypal') {
        throw new GatewayError(
          'configuration_error',
          'The Stripe gateway cannot pay on the PayPal rail.',
          'stripe',
        );
      }
      if (!Number.isSafeInteger(request.amountMinor) || request.amountMinor <= 0) {
        throw new GatewayError('configuration_error', 'amountMinor must be a positive integer.', 'stripe');
      }
      const params: Stripe.PaymentIntentCreateParams = {
        // Stripe's amount, not always our minor units (ISK, UGX: mapping.ts).
        amount: toStripeAmount(request.amountMinor, request.currency),
        currency: request.currency.toLowerCase(),
        payment_method: request.paymentMethodToken,
        // ACH debits go through us_bank_account: they answer `processing` and settle days later.
        // (API 2026-10-28 renamed payment_method_types to allowed_payment_method_types.)
        allowed_payment_method_types: request.rail === 'ach' ? ['us_bank_account'] : ['card'],
        confirm: true,
        off_session: true,
        description: request.description,
        metadata: {
          [METADATA.paymentId]: request.paymentId,
          [METADATA.tenantId]: request.tenantId,
          [METADATA.invoiceNumber]: request.invoiceNumber,
        },
        expand: ['payment_method'],
      };
      if (request.providerCustomerId) params.customer = request.providerCustomerId;
      if (request.payee.stripeAccount) params.transfer_data = { destination: request.payee.stripeAccount };
      const idempotencyKey = payIdempotencyKey(request.paymentId);

      return withRetry<PaymentOutcome>(
        async () => {
          try {
            return mapPaymentIntent(await stripe.paymentIntents.create(params, { idempotencyKey }));
          } catch (error) {
            // A decline is an answer, not a failed call: Stripe created the PaymentIntent and declined
            // it (402 with the PaymentIntent in the body), so it is our failed outcome with its
            // reference, and the failure comes from its last_payment_error.
            if (isStripeErrorLike(error) && error.type === 'StripeCardError' && error.payment_intent) {
              return mapPaymentIntent(error.payment_intent);
            }
            if (isStripeErrorLike(error)) throw mapStripeError(error);
            throw error;
          }
        },
        {
          ...retryBase,
          checkOutcome: () =>
            retrieveOnce({
              paymentId: request.paymentId,
              amount: { amountMinor: request.amountMinor, currency: request.currency },
            }),
        },
      );
    },

    async retrieve(lookup) {
      // A read has no side effect: after a timeout there is nothing to check, just ask again.
      return withRetry(() => retrieveOnce(lookup), { ...retryBase, checkOutcome: async () => null });
    },

    async refund(request: RefundRequest): Promise<RefundOutcome> {
      if (!Number.isSafeInteger(request.amountMinor) || request.amountMinor <= 0) {
        throw new GatewayError('configuration_error', 'amountMinor must be a positive integer.', 'stripe');
      }
      const metadata: Record<string, string> = {
        [METADATA.refundId]: request.refundId,
        [METADATA.paymentId]: request.paymentId,
        [METADATA.tenantId]: request.tenantId,
      };
      // Our reason is free text; Stripe's `reason` is an enum for its own risk models, so ours goes in
      // metadata (Stripe caps values at 500 characters).
      if (request.reason) metadata['paygate_reason'] = request.reason.slice(0, 500);
      const idempotencyKey = refundIdempotencyKey(request.refundId);
      return withRetry<RefundOutcome>(
        async () =>
          mapRefund(
            await call(() =>
              stripe.refunds.create(
                {
                  payment_intent: request.paymentProviderReference,
                  amount: toStripeAmount(request.amountMinor, request.currency),
                  metadata,
                },
                { idempotencyKey },
              ),
            ),
          ),
        {
          ...retryBase,
          checkOutcome: async () => {
            const list = await call(() =>
              stripe.refunds.list({ payment_intent: request.paymentProviderReference, limit: 100 }),
            );
            // Ours by metadata (editable in the dashboard) and by the very amount we asked for.
            const mine = list.data.find(
              (r) =>
                r.metadata?.[METADATA.refundId] === request.refundId &&
                r.currency.toUpperCase() === request.currency &&
                r.amount === toStripeAmount(request.amountMinor, request.currency),
            );
            return mine ? mapRefund(mine) : null;
          },
        },
      );
    },

    async retrieveRefund({ refundId, providerReference }): Promise<RefundOutcome | null> {
      // A read: no idempotency key, nothing to check after a timeout but to ask again.
      return withRetry(
        async () => {
          let refund: Stripe.Refund;
          try {
            refund = await call(() => stripe.refunds.retrieve(providerReference));
          } catch (error) {
            if (error instanceof GatewayError && error.details.providerCode === 'resource_missing')
              return null;
            throw error;
          }
          // Every refund we create carries our id; a reference that names another refund is not ours.
          const ours = refund.metadata?.[METADATA.refundId];
          if (ours !== undefined && ours !== refundId) return null;
          return mapRefund(refund);
        },
        { ...retryBase, checkOutcome: async () => null },
      );
    },

    // Search by our metadata covers every PaymentIntent the account holds; it has no horizon.
    noRecordConclusiveForMs: Number.POSITIVE_INFINITY,
    amountProblem: stripeAmountProblem,
  };
}
