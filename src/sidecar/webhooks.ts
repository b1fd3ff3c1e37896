/**
 * Provider webhooks: verify, store once, match, apply.
 *
 * 1. The route verifies the raw bytes before anything is parsed (Stripe's HMAC through stripe-node,
 *    PayPal's SHA256withRSA against a certificate from PayPal's own hosts). Unverified: 400, nothing stored.
 * 2. A system transaction stores the event (unique provider + event id; a duplicate changes nothing) and
 *    finds which tenant's payment it is about: by our payment id (Stripe metadata / PayPal custom_id),
 *    then by the provider's reference. Only this step crosses tenants.
 * 3. One tenant transaction applies it and marks the event processed, under the event row's lock, so two
 *    concurrent deliveries of one event apply it once. Payment status changes go through
 *    applyPaymentOutcome, the one monotonic state machine: a late `processing` after `succeeded` is
 *    audited as stale and changes nothing, so any order of delivery converges.
 * 4. An event about a payment we do not know is kept (tenant NULL, outcome `unmatched`) and alerted on
 *    the system audit chain, since no tenant's alert list can hold it.
 *
 * If applying throws, the event stays unprocessed (outcome `failed`, processed_at NULL) and the route
 * answers 500, so the provider delivers it again and the retry applies it.
 *
 * Refunds the provider reports are matched to ours by provider reference, then by our refund id (Stripe
 * refund metadata `paygate_refund_id`, PayPal refund custom_id): the webhook often arrives before our own
 * phase 3 has recorded the reference. A refund we have no row for was made outside paygate (the
 * provider's dashboard): money has moved, so we record it (no approval, flagged in the reason) and raise
 * an alert for a human, rather than pretend it did not happen.
 */
import { appendAudit, SYSTEM_TENANT_ID } from '../audit/log.js';
import { type Db, isUuid, type Queryable } from '../db/pool.js';
import type { GatewayFailure, WebhookEvent } from '../gateways/types.js';
import { formatMoney } from '../money.js';
import { createAlert } from '../payments/alerts.js';
import type { EngineDeps, FailureNotice } from '../payments/context.js';
import { crashPoint } from '../payments/crash-points.js';
import { applyPaymentOutcome, getPayment, type Payment } from '../payments/payments.js';
import { handleFailure } from '../payments/phases.js';
import { applyRefundReport } from '../payments/refund-outcome.js';

export type WebhookOutcome = 'applied' | 'ignored' | 'unmatched' | 'failed';

export interface ProcessedWebhook {
  /** `duplicate`: this provider event was already processed; nothing changed. */
  outcome: WebhookOutcome | 'duplicate';
  note?: string;
  tenantId?: string;
  paymentId?: string;
}

/** Stripe says which refund through its metadata; PayPal through the refund's custom_id. */
export function ourRefundId(event: WebhookEvent): string | undefined {
  const payload = event.payload as Record<string, unknown> | null;
  let candidate: unknown;
  if (event.provider === 'stripe') {
    const object = (payload?.data as { object?: Record<string, unknown> } | undefined)?.object;
    const refund =
      object?.object === 'refund'
        ? object
        : (object?.refunds as { data?: Record<string, unknown>[] } | undefined)?.data?.find(
            (r) => r.id === event.refund?.providerReference,
          );
    candidate = (refund?.metadata as Record<string, unknown> | undefined)?.paygate_refund_id;
  } else {
    candidate = (payload?.resource as Record<string, unknown> | undefined)?.custom_id;
  }
  return typeof candidate === 'string' && isUuid(candidate) ? candidate : undefined;
}

interface Match {
  tenantId: string;
  paymentId: string;
}

/**
 * Whether an event's own object may be the payment its metadata names. The metadata (Stripe's
 * paygate_payment_id, PayPal's custom_id) is free text that anyone with access to the provider account
 * can edit; the object's id cannot be. So a payment whose reference we already hold is only the subject
 * of events about that reference; one whose reference we do not hold yet (the event came before our
 * phase 3, or the call's answer was lost) only of an object for its very amount and currency. A reversal
 * is exempt: PayPal's names the reversal, not the capture, and it only raises an alert.
 */
function objectAgrees(
  event: WebhookEvent,
  payment: { provider_reference: string | null; amount_minor: number; currency: string },
): boolean {
  if (event.action === 'payment_reversed') return true;
  if (payment.provider_reference !== null)
    return !event.providerReference || payment.provider_reference === event.providerReference;
  return (
    !event.amount ||
    (event.amount.amountMinor === payment.amount_minor && event.amount.currency === payment.currency.trim())
  );
}

/** Which tenant's payment an event is about. System transaction: the tenant is what we are finding. */
async function matchPayment(client: Queryable, event: WebhookEvent): Promise<Match | null> {
  const provider = event.provider;
  if (event.paymentId && isUuid(event.paymentId)) {
    const { rows } = await client.query<{
      id: string;
      tenant_id: string;
      provider_reference: string | null;
      amount_minor: number;
      currency: string;
    }>(
      'SELECT id, tenant_id, provider_reference, amount_minor, currency FROM payments WHERE id = $1 AND provider = $2',
      [event.paymentId, provider],
    );
    // Metadata naming another payment than the event's object: the object decides (matched below by
    // its reference), or nothing matches and the event is held for an operator.
    if (rows[0] && objectAgrees(event, rows[0]))
      return { tenantId: rows[0].tenant_id, paymentId: rows[0].id };
  }
  if (event.providerReference) {
    const { rows } = await client.query<{ id: string; tenant_id: string }>(
      'SELECT id, tenant_id FROM payments WHERE provider = $1 AND provider_reference = $2',
      [provider, event.providerReference],
    );
    if (rows[0]) return { tenantId: rows[0].tenant_id, paymentId: rows[0].id };
  }
  if (event.refund) {
    const { rows } = await client.query<{ payment_id: string; tenant_id: string }>(
      `SELECT r.payment_id, r.tenant_id FROM refunds r JOIN payments p ON p.id = r.payment_id
       WHERE p.provider = $1 AND r.provider_reference = $2`,
      [provider, event.refund.providerReference],
    );
    if (rows[0]) return { tenantId: rows[0].tenant_id, paymentId: rows[0].payment_id };
  }
  const refundId = ourRefundId(event);
  if (refundId) {
    // By our refund id (metadata, editable at the provider): only a refund still without a reference,
    // of a payment whose reference is the one the event names (when it names one).
    const { rows } = await client.query<{ payment_id: string; tenant_id: string }>(
      `SELECT r.payment_id, r.tenant_id FROM refunds r JOIN payments p ON p.id = r.payment_id
       WHERE r.id = $1 AND p.provider = $2 AND r.provider_reference IS NULL
         AND ($3::text IS NULL OR p.provider_reference = $3)`,
      [refundId, provider, event.providerReference ?? null],
    );
    if (rows[0]) return { tenantId: rows[0].tenant_id, paymentId: rows[0].payment_id };
  }
  return null;
}

/**
 * Most deliveries confirm what our own call already recorded (the charge answered before its webhook
 * arrived): the event names our payment id and the payment already has the status and the reference it
 * reports, so applying it would change nothing. Such an event is stored already processed, as
 * `ignored`, in one statement in autocommit (migrations/020_webhook_confirming_store.sql): one round
 * trip, no tenant transaction, no lock. Anything else (a first delivery that changes something, a
 * redelivery of a stored event, an event matched only by the provider's reference) returns null and
 * takes the full path below, whose outcome for this event would have been the same.
 */
async function storeIfConfirming(
  db: Db,
  event: WebhookEvent,
  payload: string,
): Promise<ProcessedWebhook | null> {
  if (event.action !== 'payment_succeeded' && event.action !== 'payment_failed') return null;
  if (!event.paymentId || !isUuid(event.paymentId)) return null;
  const target = PAYMENT_STATUS[event.action];
  const note = `payment already ${target}`;
  const { rows } = await db.pool.query<{ tenant_id: string | null }>(
    'SELECT paygate_store_confirming_event($1, $2, $3, $4, $5, $6, $7, $8) AS tenant_id',
    [
      event.provider,
      event.eventId,
      event.type,
      payload,
      event.paymentId,
      target,
      event.providerReference ?? null,
      note,
    ],
  );
  const tenantId = rows[0]?.tenant_id;
  return tenantId ? { outcome: 'ignored', note, tenantId, paymentId: event.paymentId } : null;
}

interface Applied {
  outcome: WebhookOutcome;
  note: string;
}

const PAYMENT_STATUS = {
  payment_succeeded: 'succeeded',
  payment_processing: 'processing',
  payment_failed: 'failed',
} as const;

/**
 * Store, match and apply one verified event. Returns what happened; throws only when applying failed
 * (the event is then kept unprocessed so a redelivery retries it).
 */
export async function processWebhookEvent(deps: EngineDeps, event: WebhookEvent): Promise<ProcessedWebhook> {
  // Serialised once: the confirming store and the full path's insert store the same text. jsonb refuses
  // the NUL character, which a provider object's free text (metadata, a description) can hold: it is
  // stored as U+FFFD rather than failing the insert, which would make the provider retry for days.
  // The replacer only for a payload that has one: it visits every value, on the webhook's hot path.
  const plain = JSON.stringify(event.payload);
  const payload = plain.includes('\\u0000')
    ? JSON.stringify(event.payload, (_key, value: unknown) =>
        typeof value === 'string' ? value.replaceAll('\u0000', '\ufffd') : value,
      )
    : plain;
  const confirmed = await storeIfConfirming(deps.db, event, payload);
  if (confirmed) return confirmed;
  const stored = await deps.db.withSystem(async (client) => {
    const inserted = await client.query<{ id: string }>(
      `INSERT INTO webhook_events (provider, event_id, event_type, payload) VALUES ($1, $2, $3, $4)
       ON CONFLICT (provider, event_id) DO NOTHING RETURNING id`,
      [event.provider, event.eventId, event.type, payload],
    );
    let id = inserted.rows[0]?.id;
    if (!id) {
      const { rows } = await client.query<{ id: string; processed_at: Date | null }>(
        'SELECT id, processed_at FROM webhook_events WHERE provider = $1 AND event_id = $2',
        [event.provider, event.eventId],
      );
      // Processed before: a duplicate. Stored but unprocessed (an earlier apply failed): try again.
      if (rows[0]!.processed_at) return { duplicate: true as const };
      id = rows[0]!.id;
    }
    if (event.action === 'unsupported') {
      const note = `paygate does not act on ${event.type}`;
      await client.query(
        `UPDATE webhook_events SET outcome = 'ignored', note = $2, processed_at = now() WHERE id = $1`,
        [id, note],
      );
      return { ignored: true as const, note };
    }
    const match = await matchPayment(client, event);
    if (!match) {
      const note = `no payment here matches ${event.providerReference ?? event.paymentId ?? 'this event'}`;
      await client.query(
        `UPDATE webhook_events SET outcome = 'unmatched', note = $2, processed_at = now() WHERE id = $1`,
        [id, note],
      );
      // No tenant's alert list can hold it: the system chain does, where an operator reviews it.
      await appendAudit(client, {
        tenantId: SYSTEM_TENANT_ID,
        actorType: 'provider',
        actorId: event.provider,
        action: 'webhook.unmatched',
        subjectId: id,
        details: {
          event_id: event.eventId,
          event_type: event.type,
          payment_id: event.paymentId ?? null,
          provider_reference: event.providerReference ?? null,
          refund_reference: event.refund?.providerReference ?? null,
        },
      });
      return { unmatched: true as const, note };
    }
    await client.query('UPDATE webhook_events SET tenant_id = $2 WHERE id = $1', [id, match.tenantId]);
    return { id, match };
  });
  if ('duplicate' in stored) return { outcome: 'duplicate' };
  if ('ignored' in stored) return { outcome: 'ignored', note: stored.note };
  if ('unmatched' in stored) return { outcome: 'unmatched', note: stored.note };

  const { id, match } = stored;
  // Stored, not applied: a crash here must not make the retry look like a duplicate.
  crashPoint('in_webhook');
  const notices: FailureNotice[] = [];
  let result: ProcessedWebhook;
  try {
    result = await deps.db.withTenant(match.tenantId, async (client) => {
      const { rows } = await client.query<{ processed_at: Date | null }>(
        'SELECT processed_at FROM webhook_events WHERE id = $1 FOR UPDATE',
        [id],
      );
      if (rows[0]?.processed_at) return { outcome: 'duplicate' as const };
      const applied = await applyEvent(client, event, match.paymentId, notices);
      // Applied but uncommitted, the event row locked: a crash must roll both back together.
      crashPoint('in_webhook_apply');
      await client.query(
        'UPDATE webhook_events SET outcome = $2, note = $3, processed_at = now() WHERE id = $1',
        [id, applied.outcome, applied.note],
      );
      return { ...applied, tenantId: match.tenantId, paymentId: match.paymentId };
    });
  } catch (error) {
    notices.length = 0;
    const note = error instanceof Error ? error.message : String(error);
    await deps.db.withSystem((client) =>
      client.query(
        `UPDATE webhook_events SET outcome = 'failed', note = $2 WHERE id = $1 AND processed_at IS NULL`,
        [id, note.slice(0, 500)],
      ),
    );
    throw error;
  }
  // Committed, the provider not yet answered: its retry of this event must change nothing.
  crashPoint('after_webhook_apply');
  for (const notice of notices) deps.onAlert?.(notice);
  return result;
}

async function applyEvent(
  client: Queryable,
  event: WebhookEvent,
  paymentId: string,
  notices: FailureNotice[],
): Promise<Applied> {
  const source = {
    actorType: 'provider' as const,
    actorId: event.provider,
    note: `webhook ${event.type} ${event.eventId}`,
  };
  const action = event.action;
  switch (action) {
    case 'payment_succeeded':
    case 'payment_processing':
    case 'payment_failed': {
      const status = PAYMENT_STATUS[action];
      const before = (await getPayment(client, paymentId))!;
      const failure: GatewayFailure = event.failure ?? {
        code: 'declined',
        message: 'the provider reported the payment failed',
      };
      const applied = await applyPaymentOutcome(
        client,
        paymentId,
        {
          status,
          ...(event.providerReference ? { providerReference: event.providerReference } : {}),
          ...(status === 'failed' ? { failure } : {}),
        },
        source,
      );
      if (applied.changed && applied.payment.status === 'failed') {
        notices.push(await handleFailure(client, applied.payment, failure));
      }
      if (applied.changed) return { outcome: 'applied', note: `payment ${before.status} -> ${status}` };
      return {
        outcome: 'ignored',
        note:
          before.status === status
            ? `payment already ${status}`
            : `stale: payment is already ${before.status}; ${status} recorded and ignored`,
      };
    }
    case 'refund_succeeded':
    case 'refund_failed':
      return applyRefundEvent(client, event, (await getPayment(client, paymentId))!, notices);
    case 'payment_reversed': {
      const payment = (await getPayment(client, paymentId))!;
      const message = `The provider reports that payment ${payment.confirmationNumber} (invoice ${payment.invoiceNumber}, ${formatMoney(payment.amountMinor, payment.currency)}) was disputed or reversed (${event.type}).`;
      const alertId = await createAlert(client, {
        tenantId: payment.tenantId,
        kind: 'payment_reversed',
        code: 'payment_reversed',
        severity: 'critical',
        message,
        nextStep:
          "review the dispute or reversal in the provider's dashboard; the money may have been taken back",
        paymentId,
      });
      await appendAudit(client, {
        tenantId: payment.tenantId,
        actorType: 'provider',
        actorId: event.provider,
        action: 'payment.reversal_reported',
        subjectId: paymentId,
        details: { event_id: event.eventId, event_type: event.type },
      });
      notices.push({ tenantId: payment.tenantId, alertId, code: 'payment_reversed', message, paymentId });
      return { outcome: 'applied', note: 'reversal reported; alert raised' };
    }
    case 'unsupported':
      return { outcome: 'ignored', note: `paygate does not act on ${event.type}` };
    default: {
      const unreachable: never = action;
      throw new Error(`unhandled webhook action ${String(unreachable)}`);
    }
  }
}

/**
 * A refund event: recorded by applyRefundReport, the same path a lookup of a pending refund takes (its
 * rules: matching by reference then our id, amount checks, one move from pending, Stripe's failure after
 * success). A refund we have no row for was made at the provider without us.
 */
async function applyRefundEvent(
  client: Queryable,
  event: WebhookEvent,
  payment: Payment,
  notices: FailureNotice[],
): Promise<Applied> {
  const reported = event.refund;
  if (!reported) return { outcome: 'ignored', note: 'the event names no refund' };
  const refundId = ourRefundId(event);
  const result = await applyRefundReport(
    client,
    payment,
    {
      status: event.action === 'refund_succeeded' ? 'succeeded' : 'failed',
      providerReference: reported.providerReference,
      ...(refundId ? { refundId } : {}),
      amountMinor: reported.amountMinor,
      currency: reported.currency,
      ...(event.failure ? { failure: event.failure } : {}),
    },
    { actorType: 'provider', actorId: event.provider, eventId: event.eventId },
    notices,
  );
  if (result.outcome !== 'no_such_refund') return { outcome: result.outcome, note: result.note };
  if (event.action === 'refund_failed')
    return { outcome: 'ignored', note: 'a refund we never recorded failed' };
  return recordOutsideRefund(client, event, payment, reported, notices);
}

/** A refund made at the provider without paygate: record the fact, and make sure a human sees it. */
async function recordOutsideRefund(
  client: Queryable,
  event: WebhookEvent,
  payment: Payment,
  reported: NonNullable<WebhookEvent['refund']>,
  notices: FailureNotice[],
): Promise<Applied> {
  if (reported.currency !== payment.currency) {
    return {
      outcome: 'ignored',
      note: `refund currency ${reported.currency} differs from the payment's ${payment.currency}`,
    };
  }
  const { rows } = await client.query<{ id: string }>(
    `INSERT INTO refunds (tenant_id, payment_id, amount_minor, currency, reason, status, recovery_point, provider_reference, refunded_at)
     VALUES ($1, $2, $3, $4, $5, 'succeeded', 'finished', $6, now()) RETURNING id`,
    [
      payment.tenantId,
      payment.id,
      reported.amountMinor,
      payment.currency,
      `refunded at ${event.provider} outside paygate`,
      reported.providerReference,
    ],
  );
  const refundId = rows[0]!.id;
  await appendAudit(client, {
    tenantId: payment.tenantId,
    actorType: 'provider',
    actorId: event.provider,
    action: 'refund.recorded_from_provider',
    subjectId: refundId,
    details: {
      payment_id: payment.id,
      amount_minor: reported.amountMinor,
      currency: payment.currency,
      provider_reference: reported.providerReference,
      event_id: event.eventId,
    },
  });
  const message = `${event.provider} refunded ${formatMoney(reported.amountMinor, payment.currency)} of payment ${payment.confirmationNumber} (invoice ${payment.invoiceNumber}) without an approval in paygate.`;
  const alertId = await createAlert(client, {
    tenantId: payment.tenantId,
    kind: 'refund_outside_paygate',
    code: 'refund_outside_paygate',
    message,
    nextStep: `check who refunded it in the ${event.provider} dashboard; it is recorded here as it happened`,
    paymentId: payment.id,
    refundId,
  });
  notices.push({
    tenantId: payment.tenantId,
    alertId,
    code: 'refund_outside_paygate',
    message,
    paymentId: payment.id,
    refundId,
  });
  return { outcome: 'applied', note: 'refund made outside paygate recorded; alert raised' };
}
