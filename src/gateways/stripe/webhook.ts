/**
 * Stripe webhook verification: the raw body and the Stripe-Signature header checked with stripe-node's
 * own `webhooks.constructEvent` (HMAC-SHA256 over `t.body`, constant-time compare), then reduced to a
 * WebhookEvent by mapping.ts. Nothing is trusted before the signature is.
 */
import Stripe from 'stripe';
import { type WebhookEvent, WebhookVerificationError } from '../types.js';
import { mapStripeEvent } from './mapping.js';

/** Stripe's own default: an event signed more than five minutes ago is refused (replay protection). */
export const DEFAULT_TOLERANCE_SECONDS = 300;

export interface VerifyStripeWebhookOptions {
  toleranceSeconds?: number;
  /** The time of receipt; injectable so a test can check the tolerance without waiting. */
  now?: Date;
}

export function verifyStripeWebhook(
  rawBody: string | Buffer,
  signatureHeader: string | undefined,
  secret: string,
  options: VerifyStripeWebhookOptions = {},
): WebhookEvent {
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (!(tolerance > 0)) {
    // stripe-node treats 0 as "no tolerance check at all": we never want that.
    throw new WebhookVerificationError('toleranceSeconds must be positive');
  }
  if (!secret)
    throw new WebhookVerificationError('No Stripe webhook secret configured (STRIPE_WEBHOOK_SECRET).');
  if (!signatureHeader) throw new WebhookVerificationError('Missing Stripe-Signature header.');
  const now = options.now ?? new Date();
  // One timestamp only: stripe-node verifies against the last `t=`, and a check of its own against
  // another one would look at a different time (a current `t=` in front of a future, signed one).
  if ((signatureHeader.match(/(?:^|,)\s*t=/g) ?? []).length > 1)
    throw new WebhookVerificationError('The Stripe-Signature header carries more than one timestamp (t=).');

  let event: Stripe.Event;
  try {
    event = Stripe.webhooks.constructEvent(
      rawBody,
      signatureHeader,
      secret,
      tolerance,
      undefined,
      now.getTime(),
    );
  } catch (error) {
    // The SDK's message says how to fix it (raw body, secret whitespace, tolerance); keep it, never the secret.
    throw new WebhookVerificationError(error instanceof Error ? error.message : 'Invalid Stripe signature.');
  }

  // stripe-node only refuses old timestamps; one far in the future is as suspect (a skewed or forged
  // clock), so the same tolerance applies both ways.
  const timestamp = Number(/(?:^|,)t=(\d+)/.exec(signatureHeader)?.[1]);
  if (Number.isFinite(timestamp) && timestamp - Math.floor(now.getTime() / 1000) > tolerance) {
    throw new WebhookVerificationError('Timestamp outside the tolerance zone (in the future).');
  }

  const mapped = mapStripeEvent(event);
  const result: WebhookEvent = {
    provider: 'stripe',
    eventId: event.id,
    type: event.type,
    action: mapped.action,
    createdAt: new Date(event.created * 1000),
    payload: event,
  };
  if (mapped.paymentId) result.paymentId = mapped.paymentId;
  if (mapped.providerReference) result.providerReference = mapped.providerReference;
  if (mapped.refund) result.refund = mapped.refund;
  if (mapped.amount) result.amount = mapped.amount;
  if (mapped.failure) result.failure = mapped.failure;
  return result;
}

/**
 * Signs a payload the way Stripe does, for tests and the sandbox's consumers: the Stripe-Signature
 * header value for `payload` (the exact bytes that will be sent) under `secret`.
 */
export function signStripeWebhookForTest(payload: string, secret: string, timestampSeconds?: number): string {
  return Stripe.webhooks.generateTestHeaderString({
    payload,
    secret,
    ...(timestampSeconds !== undefined ? { timestamp: timestampSeconds } : {}),
  });
}
