/**
 * The one way a provider's final word about one of our refunds is recorded, whether the provider pushed
 * it (a webhook) or we asked for it (the worker's lookup of a pending refund, get_payment_status with
 * refresh). One path, so a refund resolved by asking ends exactly as the same news by webhook would:
 * the same row, status, audit entry and alert, and the same refusal to go backwards. The webhook's
 * applyRefundEvent (src/sidecar/webhooks.ts) and refund.ts's lookup both call it.
 *
 * It runs inside the caller's tenant transaction, takes the payment's lock first (as refund.ts does, so
 * a refund being made concurrently cannot overlap it), then the refund's row lock. It never creates a
 * refund row: a report about a refund we have no row for returns `no_such_refund` and the caller
 * decides (the webhook records a refund made outside paygate; a lookup of our own row cannot get there).
 */
import { type ActorType, appendAudit } from '../audit/log.js';
import type { Queryable } from '../db/pool.js';
import type { GatewayFailure } from '../gateways/types.js';
import { formatMoney } from '../money.js';
import { createAlert } from './alerts.js';
import type { FailureNotice } from './context.js';
import { lockPayment, type Payment } from './payments.js';

/** What the provider says became of a refund: only final outcomes are applied. */
export interface RefundReport {
  status: 'succeeded' | 'failed';
  /** The provider's refund id (re_..., the PayPal refund id). */
  providerReference: string;
  /** Our refund id, when known: the provider echoed it (metadata, custom_id) or we asked about our row. */
  refundId?: string;
  /** What the provider says was refunded, in ISO 4217 minor units, and its currency. */
  amountMinor: number;
  currency: string;
  failure?: GatewayFailure;
}

export interface RefundReportSource {
  /** `provider` for a webhook; `system` (actorId `reconciler`) when paygate asked. */
  actorType: ActorType;
  actorId: string;
  /** The provider's event id, for a webhook. */
  eventId?: string;
  /** How it was learnt, when not by an event ("refund looked up at stripe"); shown in the history. */
  note?: string;
}

export type RefundReportResult =
  | { outcome: 'applied'; refundId: string; status: 'succeeded' | 'failed'; note: string }
  | { outcome: 'ignored'; refundId: string; status: 'pending' | 'succeeded' | 'failed'; note: string }
  | { outcome: 'no_such_refund' };

interface RefundRow {
  id: string;
  status: 'pending' | 'succeeded' | 'failed';
  amount_minor: number;
  provider_reference: string | null;
}

/** Alert kind raised when the provider's amount for our refund is not the amount we recorded. */
export const REFUND_AMOUNT_MISMATCH = 'refund_amount_mismatch';

/**
 * Record a provider's final word about one refund of `payment`. Matching: by the provider's reference
 * first, then by our refund id. A report whose amount or currency differs from our row's changes
 * nothing and raises a critical alert (once while it is open: a lookup repeats the same report). A
 * refund moves once from pending, except that Stripe can fail one it reported succeeded (the payee's
 * bank returned it); any other report about a final refund is audited as stale. Alerts raised are
 * appended to `notices`, for the caller to hand to `deps.onAlert` after its transaction commits.
 */
export async function applyRefundReport(
  client: Queryable,
  payment: Payment,
  report: RefundReport,
  source: RefundReportSource,
  notices: FailureNotice[],
): Promise<RefundReportResult> {
  await lockPayment(client, payment.id);
  const select = 'SELECT id, status, amount_minor, provider_reference FROM refunds';
  let row = (
    await client.query<RefundRow>(`${select} WHERE payment_id = $1 AND provider_reference = $2 FOR UPDATE`, [
      payment.id,
      report.providerReference,
    ])
  ).rows[0];
  if (!row && report.refundId) {
    // Our id comes from the provider object's metadata, which anyone with access to the account can
    // edit: it names our refund only while that refund has no provider reference yet (the event came
    // before our phase 3), never one that is another provider refund's.
    row = (
      await client.query<RefundRow>(
        `${select} WHERE id = $1 AND payment_id = $2 AND provider_reference IS NULL FOR UPDATE`,
        [report.refundId, payment.id],
      )
    ).rows[0];
  }
  if (!row) return { outcome: 'no_such_refund' };
  const to = report.status;
  const actor = { tenantId: payment.tenantId, actorType: source.actorType, actorId: source.actorId };
  const about = {
    ...(source.eventId ? { event_id: source.eventId } : {}),
    ...(source.note ? { note: source.note } : {}),
  };

  // Our refund, by its reference or our id, but for another sum: which one is true is for a human to find
  // out at the provider; neither is recorded over the other.
  if (report.amountMinor !== row.amount_minor || report.currency !== payment.currency) {
    return amountMismatch(client, payment, row, report, source, notices);
  }
  const failsAfterSuccess = row.status === 'succeeded' && to === 'failed';
  if (row.status !== 'pending' && !failsAfterSuccess) {
    if (row.status !== to) {
      await appendAudit(client, {
        ...actor,
        action: 'refund.stale_outcome_ignored',
        subjectId: row.id,
        details: { current: row.status, reported: to, ...about },
      });
      return {
        outcome: 'ignored',
        refundId: row.id,
        status: row.status,
        note: `stale: refund is already ${row.status}; ${to} recorded and ignored`,
      };
    }
    return { outcome: 'ignored', refundId: row.id, status: row.status, note: `refund already ${row.status}` };
  }

  const failure =
    to === 'failed' ? (report.failure ?? { code: 'declined', message: 'the refund failed' }) : null;
  await client.query(
    `UPDATE refunds SET status = $2, provider_reference = COALESCE(provider_reference, $3), failure_code = $4, failure_message = $5,
            recovery_point = 'finished', refunded_at = CASE WHEN $2 = 'succeeded' THEN now() END, updated_at = now()
     WHERE id = $1`,
    [row.id, to, report.providerReference, failure?.code ?? null, failure?.message ?? null],
  );
  await appendAudit(client, {
    ...actor,
    action: failsAfterSuccess ? 'refund.failed_after_success' : `refund.${to}`,
    subjectId: row.id,
    details: {
      payment_id: payment.id,
      amount_minor: row.amount_minor,
      currency: payment.currency,
      provider_reference: report.providerReference,
      failure,
      ...about,
    },
  });
  if (failure) {
    const amount = formatMoney(row.amount_minor, payment.currency);
    const message = failsAfterSuccess
      ? `Refund of ${amount} on invoice ${payment.invoiceNumber}, reported succeeded, has failed: ${failure.message}`
      : `Refund of ${amount} on invoice ${payment.invoiceNumber} failed: ${failure.message}`;
    const alertId = await createAlert(client, {
      tenantId: payment.tenantId,
      kind: 'refund_failed',
      code: failure.code,
      message,
      nextStep: failsAfterSuccess
        ? 'the payer has not been paid back after all and the money is back in the provider balance; contact the payer and refund again another way'
        : 'review the refund with the provider; the payer has not been paid back',
      ...(failsAfterSuccess ? { severity: 'critical' as const } : {}),
      paymentId: payment.id,
      refundId: row.id,
    });
    notices.push({
      tenantId: payment.tenantId,
      alertId,
      code: failure.code,
      message,
      paymentId: payment.id,
      refundId: row.id,
    });
  }
  return { outcome: 'applied', refundId: row.id, status: to, note: `refund ${row.status} -> ${to}` };
}

/** The provider reports our refund with another amount or currency than ours: held for a human. */
async function amountMismatch(
  client: Queryable,
  payment: Payment,
  row: RefundRow,
  report: RefundReport,
  source: RefundReportSource,
  notices: FailureNotice[],
): Promise<RefundReportResult> {
  const ours = formatMoney(row.amount_minor, payment.currency);
  const theirs = formatMoney(report.amountMinor, report.currency);
  const note = `refund amount ${theirs} differs from ours (${ours}); alert raised`;
  // Asked again (every lookup), the same disagreement is one open alert, not one per check.
  const open = await client.query(
    `SELECT 1 FROM alerts WHERE refund_id = $1 AND kind = $2 AND status = 'open'`,
    [row.id, REFUND_AMOUNT_MISMATCH],
  );
  if (open.rows.length > 0) return { outcome: 'ignored', refundId: row.id, status: row.status, note };
  await appendAudit(client, {
    tenantId: payment.tenantId,
    actorType: source.actorType,
    actorId: source.actorId,
    action: 'refund.amount_mismatch',
    subjectId: row.id,
    details: {
      payment_id: payment.id,
      amount_minor: row.amount_minor,
      currency: payment.currency,
      reported_amount_minor: report.amountMinor,
      reported_currency: report.currency,
      reported_status: report.status,
      provider_reference: report.providerReference,
      ...(source.eventId ? { event_id: source.eventId } : {}),
      ...(source.note ? { note: source.note } : {}),
    },
  });
  const message = `${payment.provider} reports refund ${report.providerReference} on invoice ${payment.invoiceNumber} as ${theirs}; paygate approved and recorded ${ours}.`;
  const alertId = await createAlert(client, {
    tenantId: payment.tenantId,
    kind: REFUND_AMOUNT_MISMATCH,
    code: REFUND_AMOUNT_MISMATCH,
    severity: 'critical',
    message,
    nextStep: `check the refund in the ${payment.provider} dashboard; paygate left its record of it unchanged`,
    paymentId: payment.id,
    refundId: row.id,
  });
  notices.push({
    tenantId: payment.tenantId,
    alertId,
    code: REFUND_AMOUNT_MISMATCH,
    message,
    paymentId: payment.id,
    refundId: row.id,
  });
  return { outcome: 'ignored', refundId: row.id, status: row.status, note };
}
