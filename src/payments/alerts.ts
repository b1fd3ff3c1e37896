/**
 * Alerts for humans, and the seed's rule for each kind of failure. An alert is created in the same
 * transaction that records the failure, so a failure is never recorded without one.
 */
import { appendAudit } from '../audit/log.js';
import { isUuid, type Queryable } from '../db/pool.js';
import { confirmStillAllowed, type User } from '../directory/users.js';
import { RefusedError } from '../errors.js';
import type { GatewayErrorCode } from '../gateways/types.js';

export type FailureRule =
  | 'reschedule'
  | 'request_payment_method'
  | 'retry'
  | 'check_outcome'
  | 'manual_review';

/** What to do about a failure, per the product's rules. Exhaustive: a new code must be decided here. */
export function ruleFor(code: GatewayErrorCode | 'not_submitted' | 'not_made'): {
  rule: FailureRule;
  nextStep: string;
  severity: 'warning' | 'critical';
} {
  switch (code) {
    case 'insufficient_funds':
      return {
        rule: 'reschedule',
        nextStep: 'rescheduled for the next business day; top up the funding account',
        severity: 'warning',
      };
    case 'payment_method_invalid':
      return {
        rule: 'request_payment_method',
        nextStep: 'add an updated payment method (paygate payment-method add), then pay again',
        severity: 'warning',
      };
    case 'api_error':
    case 'rate_limited':
      return {
        rule: 'retry',
        nextStep: 'the provider failed after retries; review, then ask the agent to pay again',
        severity: 'warning',
      };
    case 'network_timeout':
      return {
        rule: 'check_outcome',
        nextStep: 'the outcome is unknown; the worker is asking the provider before anything else',
        severity: 'warning',
      };
    case 'declined':
      return {
        rule: 'manual_review',
        nextStep: "the payment was declined; review it with the payer's bank or the provider",
        severity: 'warning',
      };
    case 'configuration_error':
      return {
        rule: 'manual_review',
        nextStep: 'fix the provider configuration (keys, account); nothing was charged',
        severity: 'critical',
      };
    case 'not_submitted':
      return {
        rule: 'manual_review',
        nextStep: 'the payment never reached the provider; ask the agent to request a new approval',
        severity: 'warning',
      };
    case 'not_made':
      return {
        rule: 'manual_review',
        nextStep:
          'an admin found at the provider that it was not made; the invoice is approved again: ask for a new approval to pay it',
        severity: 'warning',
      };
    default: {
      const unreachable: never = code;
      throw new Error(`no rule for ${String(unreachable)}`);
    }
  }
}

export interface NewAlert {
  tenantId: string;
  kind: string;
  code: string | null;
  message: string;
  nextStep: string;
  severity?: 'info' | 'warning' | 'critical';
  paymentId?: string;
  refundId?: string;
  scheduledPaymentId?: string;
}

export async function createAlert(client: Queryable, alert: NewAlert): Promise<string> {
  const { rows } = await client.query<{ id: string }>(
    `INSERT INTO alerts (tenant_id, kind, severity, payment_id, refund_id, scheduled_payment_id, code, message, next_step)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
    [
      alert.tenantId,
      alert.kind,
      alert.severity ?? 'warning',
      alert.paymentId ?? null,
      alert.refundId ?? null,
      alert.scheduledPaymentId ?? null,
      alert.code,
      alert.message,
      alert.nextStep,
    ],
  );
  const id = rows[0]!.id;
  await appendAudit(client, {
    tenantId: alert.tenantId,
    actorType: 'system',
    actorId: 'engine',
    action: 'alert.created',
    subjectId: id,
    details: {
      kind: alert.kind,
      code: alert.code,
      payment_id: alert.paymentId ?? null,
      refund_id: alert.refundId ?? null,
    },
  });
  return id;
}

export interface AlertView {
  alert_id: string;
  kind: string;
  severity: string;
  code: string | null;
  message: string;
  next_step: string | null;
  payment_id: string | null;
  refund_id: string | null;
  status: string;
  analysis: unknown;
  created_at: string;
}

export async function listAlerts(
  client: Queryable,
  filter: { alertId?: string; paymentId?: string; status?: string; limit?: number } = {},
): Promise<AlertView[]> {
  const { rows } = await client.query<{
    id: string;
    kind: string;
    severity: string;
    code: string | null;
    message: string;
    next_step: string | null;
    payment_id: string | null;
    refund_id: string | null;
    status: string;
    analysis: unknown;
    created_at: Date;
  }>(
    `SELECT id, kind, severity, code, message, next_step, payment_id, refund_id, status, analysis, created_at FROM alerts
     WHERE ($1::uuid IS NULL OR payment_id = $1) AND ($2::text IS NULL OR status = $2) AND ($4::uuid IS NULL OR id = $4)
     ORDER BY created_at DESC LIMIT $3`,
    [filter.paymentId ?? null, filter.status ?? null, filter.limit ?? 500, filter.alertId ?? null],
  );
  return rows.map((r) => ({
    alert_id: r.id,
    kind: r.kind,
    severity: r.severity,
    code: r.code,
    message: r.message,
    next_step: r.next_step,
    payment_id: r.payment_id,
    refund_id: r.refund_id,
    status: r.status,
    analysis: r.analysis,
    created_at: r.created_at.toISOString(),
  }));
}

/** The alert that holds a payment for a human (src/payments/phases.ts, reconcilePayment). */
export const HELD_ALERT_KIND = 'payment_outcome_unverifiable';

/**
 * The alert on a payment we recorded failed that the provider says succeeded while another payment of
 * its invoice was live (src/payments/payments.ts, applyLateSuccess): it is left failed until that other
 * payment is decided (src/payments/held.ts).
 */
export const PAID_TWICE_ALERT_KIND = 'invoice_paid_twice';

/**
 * A human marks an alert dealt with (an approver or an admin), with an audit entry naming them and
 * their note. Two kinds wait on a payment instead: the alert that holds a payment for a human is
 * resolved with the payment (`paygate payments resolve`), since resolved alone it would leave the payment
 * held with nothing saying so; and a paid-twice alert, while the other payment of its invoice is still
 * processing, because that payment's outcome decides which of the two paid.
 */
export async function resolveAlert(
  client: Queryable,
  tenantId: string,
  alertId: string,
  user: User,
  note: string | undefined,
): Promise<AlertView> {
  if (user.role === 'viewer')
    throw new RefusedError(
      'approver_required',
      `${user.email} is a viewer; resolving an alert needs an approver or an admin`,
    );
  const notFound = new RefusedError('alert_not_found', `no alert ${alertId} in this tenant`);
  if (!isUuid(alertId)) throw notFound;
  await confirmStillAllowed(client, user, ['approver', 'admin']);
  const { rows } = await client.query<{
    status: string;
    kind: string;
    payment_id: string | null;
    held: boolean;
    undecided: string | null;
  }>(
    `SELECT a.status, a.kind, a.payment_id, COALESCE(p.status = 'processing', false) AS held,
            (SELECT o.id FROM payments o WHERE o.invoice_id = p.invoice_id AND o.id <> p.id AND o.status = 'processing'
              LIMIT 1) AS undecided
       FROM alerts a LEFT JOIN payments p ON p.id = a.payment_id
      WHERE a.id = $1 FOR UPDATE OF a`,
    [alertId],
  );
  const alert = rows[0];
  if (!alert) throw notFound;
  if (alert.status !== 'open')
    throw new RefusedError('alert_not_open', `alert ${alertId} is already ${alert.status}`);
  if (alert.kind === HELD_ALERT_KIND && alert.held)
    throw new RefusedError(
      'alert_holds_payment',
      `alert ${alertId} holds payment ${alert.payment_id} for a human: it is resolved with the payment`,
      `check the payment at its provider: if it was made, resend its webhook from there; if not, an admin runs \`paygate payments resolve ${alert.payment_id} --not-made\``,
    );
  // A success the provider reported while another payment of the invoice was live waits on that payment:
  // recorded not made, it is applied then (src/payments/held.ts), which reads this alert.
  if (alert.kind === PAID_TWICE_ALERT_KIND && alert.undecided)
    throw new RefusedError(
      'alert_waits_on_payment',
      `alert ${alertId} waits on payment ${alert.undecided} of the same invoice, still processing: it is settled when that payment is`,
      'follow that payment (paygate payments show); if it is held, check it at its provider first',
    );
  await client.query("UPDATE alerts SET status = 'resolved', resolved_at = now() WHERE id = $1", [alertId]);
  await appendAudit(client, {
    tenantId,
    actorType: 'user',
    actorId: user.email,
    action: 'alert.resolved',
    subjectId: alertId,
    details: { kind: alert.kind, note: note ?? null },
  });
  return (await listAlerts(client, { alertId }))[0]!;
}
