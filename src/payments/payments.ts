/**
 * Payment rows and their state machine. A payment is born `processing` in phase 1 and moves once, to
 * `succeeded` or `failed`, whoever reports the outcome first (our own call, a webhook, the reconciler,
 * a refresh). Later reports that disagree are recorded and ignored: nothing moves a payment backwards.
 */
import { type ActorType, appendAudit } from '../audit/log.js';
import { isUuid, type Queryable } from '../db/pool.js';
import type { GatewayFailure, PaymentOutcome, Provider, Rail } from '../gateways/types.js';
import { formatAmount } from '../money.js';
import { createAlert, PAID_TWICE_ALERT_KIND } from './alerts.js';
import { type InvoiceStatus, transitionInvoice } from './invoices.js';

export type PaymentStatus = 'processing' | 'succeeded' | 'failed';
export type RecoveryPoint = 'started' | 'provider_called' | 'finished';

export const PAYMENT_TRANSITIONS: Readonly<Record<PaymentStatus, readonly PaymentStatus[]>> = {
  processing: ['succeeded', 'failed'],
  succeeded: [],
  // The provider's authoritative word that money moved after all (a late success after we recorded a
  // failure, e.g. a search that lagged behind a charge): see applyLateSuccess.
  failed: ['succeeded'],
};

export interface Payment {
  id: string;
  tenantId: string;
  invoiceId: string;
  invoiceNumber: string;
  vendorName: string;
  agentKeyId: string | null;
  approvalId: string;
  scheduledPaymentId: string | null;
  amountMinor: number;
  currency: string;
  rail: Rail;
  provider: Provider;
  paymentMethodId: string;
  status: PaymentStatus;
  recoveryPoint: RecoveryPoint;
  providerReference: string | null;
  confirmationNumber: string;
  failureCode: string | null;
  failureProviderCode: string | null;
  failureMessage: string | null;
  approvedBy: string[];
  refundedMinor: number;
  pendingRefundMinor: number;
  createdAt: Date;
  paidAt: Date | null;
}

interface PaymentRow {
  id: string;
  tenant_id: string;
  invoice_id: string;
  invoice_number: string;
  vendor_name: string;
  agent_key_id: string | null;
  approval_id: string;
  scheduled_payment_id: string | null;
  amount_minor: number;
  currency: string;
  rail: Rail;
  provider: Provider;
  payment_method_id: string;
  status: PaymentStatus;
  recovery_point: RecoveryPoint;
  provider_reference: string | null;
  confirmation_number: string;
  failure_code: string | null;
  failure_provider_code: string | null;
  failure_message: string | null;
  approved_by: string[];
  refunded_minor: number;
  pending_refund_minor: number;
  created_at: Date;
  paid_at: Date | null;
}

/** A payment's columns, over `payments p`, its invoice `i` and the invoice's counterparty `c`. */
const PAYMENT_COLUMNS = `p.id, p.tenant_id, p.invoice_id, i.number AS invoice_number, c.name AS vendor_name, p.agent_key_id,
  p.approval_id, p.scheduled_payment_id, p.amount_minor, p.currency, p.rail, p.provider, p.payment_method_id, p.status,
  p.recovery_point, p.provider_reference, p.confirmation_number, p.failure_code, p.failure_provider_code, p.failure_message,
  p.approved_by, p.created_at, p.paid_at,
  COALESCE((SELECT sum(r.amount_minor) FROM refunds r WHERE r.payment_id = p.id AND r.status = 'succeeded'), 0)::bigint AS refunded_minor,
  COALESCE((SELECT sum(r.amount_minor) FROM refunds r WHERE r.payment_id = p.id AND r.status = 'pending'), 0)::bigint AS pending_refund_minor`;

const SELECT_PAYMENT = `SELECT ${PAYMENT_COLUMNS}
  FROM payments p JOIN invoices i ON i.id = p.invoice_id JOIN counterparties c ON c.id = i.counterparty_id`;

function toPayment(r: PaymentRow): Payment {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    invoiceId: r.invoice_id,
    invoiceNumber: r.invoice_number,
    vendorName: r.vendor_name,
    agentKeyId: r.agent_key_id,
    approvalId: r.approval_id,
    scheduledPaymentId: r.scheduled_payment_id,
    amountMinor: r.amount_minor,
    currency: r.currency.trim(),
    rail: r.rail,
    provider: r.provider,
    paymentMethodId: r.payment_method_id,
    status: r.status,
    recoveryPoint: r.recovery_point,
    providerReference: r.provider_reference,
    confirmationNumber: r.confirmation_number,
    failureCode: r.failure_code,
    failureProviderCode: r.failure_provider_code,
    failureMessage: r.failure_message,
    approvedBy: r.approved_by,
    refundedMinor: r.refunded_minor,
    pendingRefundMinor: r.pending_refund_minor,
    createdAt: r.created_at,
    paidAt: r.paid_at,
  };
}

/**
 * A payment by our id. With `forUpdate` its row is locked too; the refund totals in the answer are then
 * those from before any wait for the lock (the row is read again after the wait, the refunds are not):
 * for totals that include what committed meanwhile, `lockPayment` and then read.
 */
export async function getPayment(
  client: Queryable,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<Payment | null> {
  if (!isUuid(id)) return null;
  const { rows } = await client.query<PaymentRow>(
    `${SELECT_PAYMENT} WHERE p.id = $1${options.forUpdate ? ' FOR UPDATE OF p' : ''}`,
    [id],
  );
  return rows[0] ? toPayment(rows[0]) : null;
}

/**
 * Lock a payment's row until the transaction ends, reading nothing: the serialisation point for its
 * refunds. A read after it (a new statement) sees every refund committed while this waited. NO KEY:
 * refunds still take turns, but an insert that only references the payment (an alert, a refund row)
 * is not blocked, so a path that writes those before it locks cannot deadlock against one that locks first.
 */
export async function lockPayment(client: Queryable, id: string): Promise<void> {
  await client.query('SELECT 1 FROM payments WHERE id = $1 FOR NO KEY UPDATE', [id]);
}

/** By our id, the provider's reference, or our confirmation number. */
export async function findPayment(client: Queryable, ref: string): Promise<Payment | null> {
  if (isUuid(ref)) return getPayment(client, ref);
  const { rows } = await client.query<PaymentRow>(
    `${SELECT_PAYMENT} WHERE p.provider_reference = $1 OR p.confirmation_number = $1 ORDER BY p.created_at DESC LIMIT 1`,
    [ref],
  );
  return rows[0] ? toPayment(rows[0]) : null;
}

export async function paymentsOfInvoice(client: Queryable, invoiceId: string): Promise<Payment[]> {
  const { rows } = await client.query<PaymentRow>(
    `${SELECT_PAYMENT} WHERE p.invoice_id = $1 ORDER BY p.created_at DESC`,
    [invoiceId],
  );
  return rows.map(toPayment);
}

export async function listPayments(client: Queryable, limit = 200): Promise<Payment[]> {
  const { rows } = await client.query<PaymentRow>(`${SELECT_PAYMENT} ORDER BY p.created_at DESC LIMIT $1`, [
    limit,
  ]);
  return rows.map(toPayment);
}

/** A confirmation number a human can read over the phone: PG- and 10 characters without look-alikes. */
export function newConfirmationNumber(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  return `PG-${[...bytes].map((b) => alphabet[b % alphabet.length]).join('')}`;
}

export interface NewPayment {
  id: string;
  tenantId: string;
  invoiceId: string;
  agentKeyId: string | null;
  approvalId: string;
  scheduledPaymentId?: string;
  amountMinor: number;
  currency: string;
  rail: Rail;
  provider: Provider;
  paymentMethodId: string;
  approvedBy: string[];
}

/**
 * How long a payment whose phase 1 just committed is left to the process calling its provider before the
 * reconciler first looks at it (its `next_check_at`), pay-now and scheduled alike: longer than that call
 * takes at the gateways' default timeouts (three attempts, a lookup after each timeout: about four
 * minutes at worst, with PayPal's 30 s), so the reconciler does not ask about, let alone send again, a
 * payment whose own call is still running. A process that died in phase 2 leaves its payment found then;
 * a call that outlasts it overlaps a re-send under the same key, which the provider deduplicates. Phase 3
 * moves the check as its answer requires (a timeout or a settling payment: FIRST_CHECK_DELAY_S; a
 * deferral: the retry's delay).
 */
export const FIRST_CHECK_AFTER_START_MS = 5 * 60_000;

/**
 * Phase 1's payment row: `processing` at recovery point `started`. Its first submission is counted here
 * (`submit_attempts` 1), as a scheduled payment's is, because phase 2 sends it next: the reconciler's
 * re-sends then make at most MAX_SUBMIT_ATTEMPTS sends in all (src/worker/index.ts). A statement
 * (`RETURNING *`) rather than a call, so that phase 1 reads back what phase 2 sends in the same round
 * trip (insertSubmission, src/payments/phases.ts).
 */
export function insertPaymentStatement(p: NewPayment): { text: string; values: unknown[] } {
  return {
    text: `INSERT INTO payments (id, tenant_id, invoice_id, agent_key_id, approval_id, scheduled_payment_id, amount_minor, currency, rail,
                           provider, payment_method_id, confirmation_number, approved_by, submit_attempts, next_check_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, now() + make_interval(secs => $14))
     RETURNING *`,
    values: [
      p.id,
      p.tenantId,
      p.invoiceId,
      p.agentKeyId,
      p.approvalId,
      p.scheduledPaymentId ?? null,
      p.amountMinor,
      p.currency,
      p.rail,
      p.provider,
      p.paymentMethodId,
      newConfirmationNumber(),
      p.approvedBy,
      FIRST_CHECK_AFTER_START_MS / 1000,
    ],
  };
}

export type OutcomeSource = { actorType: ActorType; actorId: string; note?: string };

export interface AppliedOutcome {
  payment: Payment;
  /** False when the outcome was stale or repeated: recorded in the audit log, nothing changed. */
  changed: boolean;
}

/**
 * Apply what the provider says about a payment, in the caller's transaction. Locks the payment row;
 * moves it only along PAYMENT_TRANSITIONS; moves the invoice with it (paid, or back to approved).
 */
export async function applyPaymentOutcome(
  client: Queryable,
  paymentId: string,
  outcome: { status: PaymentOutcome['status']; providerReference?: string; failure?: GatewayFailure },
  source: OutcomeSource,
): Promise<AppliedOutcome> {
  const payment = await getPayment(client, paymentId, { forUpdate: true });
  if (!payment) throw new Error(`payment ${paymentId} not found`);
  const to = outcome.status;
  const moves = to !== payment.status && PAYMENT_TRANSITIONS[payment.status].includes(to);
  const lateSuccess = to === 'succeeded' && payment.status === 'failed';
  // A first move records the reference in its own UPDATE below; anything else records it here.
  if ((!moves || lateSuccess) && payment.providerReference === null && outcome.providerReference) {
    await client.query('UPDATE payments SET provider_reference = $2, updated_at = now() WHERE id = $1', [
      paymentId,
      outcome.providerReference,
    ]);
  }
  if (!moves) {
    if (to !== payment.status) {
      await appendAudit(client, {
        tenantId: payment.tenantId,
        actorType: source.actorType,
        actorId: source.actorId,
        action: 'payment.stale_outcome_ignored',
        subjectId: paymentId,
        details: { current: payment.status, reported: to, note: source.note ?? null },
      });
    }
    return { payment: (await getPayment(client, paymentId))!, changed: false };
  }
  if (lateSuccess) return applyLateSuccess(client, payment, outcome.providerReference, source);
  // processing -> succeeded or failed, in one UPDATE that also records a reference we did not have,
  // returning the payment as it now stands. Its refund sums are read by the UPDATE too: the locked read's
  // snapshot predates its wait for the lock, so a refund committed by the holder it waited for (a
  // provider's refund webhook) is only seen from here.
  const failure =
    to === 'failed'
      ? (outcome.failure ?? { code: 'declined', message: 'the provider reported the payment failed' })
      : null;
  const { rows: moved } = await client.query<PaymentRow>(
    `UPDATE payments p SET status = $2, recovery_point = 'finished', provider_reference = COALESCE(p.provider_reference, $3),
            paid_at = CASE WHEN $2::text = 'succeeded' THEN now() END, failure_code = $4, failure_provider_code = $5,
            failure_message = $6, next_check_at = NULL, updated_at = now()
       FROM invoices i JOIN counterparties c ON c.id = i.counterparty_id
      WHERE p.id = $1 AND i.id = p.invoice_id
     RETURNING ${PAYMENT_COLUMNS}`,
    [
      paymentId,
      to,
      outcome.providerReference ?? null,
      failure?.code ?? null,
      failure?.providerCode ?? null,
      failure?.message ?? null,
    ],
  );
  await transitionInvoice(client, payment.invoiceId, 'processing', to === 'succeeded' ? 'paid' : 'approved');
  await appendAudit(client, {
    tenantId: payment.tenantId,
    actorType: source.actorType,
    actorId: source.actorId,
    action: `payment.${to}`,
    subjectId: paymentId,
    details: {
      invoice_number: payment.invoiceNumber,
      amount_minor: payment.amountMinor,
      currency: payment.currency,
      provider: payment.provider,
      provider_reference: outcome.providerReference ?? payment.providerReference,
      failure: outcome.failure ?? null,
      note: source.note ?? null,
    },
  });
  return { payment: toPayment(moved[0]!), changed: true };
}

/** The confirmation fields of DESIGN.md's "done" answer. */
export function paymentJson(p: Payment) {
  const refunded = p.refundedMinor;
  const status =
    p.status === 'succeeded'
      ? p.pendingRefundMinor > 0
        ? 'refund_pending'
        : refunded >= p.amountMinor
          ? 'refunded'
          : refunded > 0
            ? 'partially_refunded'
            : 'paid'
      : p.status;
  return {
    payment_id: p.id,
    invoice_id: p.invoiceId,
    invoice_number: p.invoiceNumber,
    payee: p.vendorName,
    amount: formatAmount(p.amountMinor, p.currency),
    amount_minor: p.amountMinor,
    currency: p.currency,
    status,
    payment_method: p.rail,
    provider: p.provider,
    approved_by: p.approvedBy[0] ?? null,
    approvers: p.approvedBy,
    gateway_reference: p.providerReference,
    confirmation_number: p.confirmationNumber,
    paid_at: p.paidAt?.toISOString() ?? null,
    refunded_amount: formatAmount(refunded, p.currency),
    created_at: p.createdAt.toISOString(),
  };
}

/**
 * The provider says a payment we recorded as failed succeeded: the money moved. Never ignore that.
 * When nothing else is paying the invoice, the payment becomes succeeded and the invoice paid (a
 * waiting reschedule is cancelled). When another payment of the invoice is live, the invoice may be
 * paid twice: the status stays, and a critical alert asks a human to refund one.
 */
async function applyLateSuccess(
  client: Queryable,
  payment: Payment,
  providerReference: string | undefined,
  source: OutcomeSource,
): Promise<AppliedOutcome> {
  // Locks in an order no other path of the invoice's can close a cycle with. First its other live
  // payments (their phase 3, a reschedule included, takes the payment, then the invoice, then the
  // schedule: it finishes before this goes on), then its live schedules (the worker starting one takes
  // the schedule, then a live-payment slot, then the invoice; a cancel, the schedule then the invoice),
  // then the invoice (a new payment's phase 1 takes it, then a slot). Had this taken the invoice's
  // live-payment slot (the UPDATE below) and then waited for any of them, they would deadlock. After
  // waiting, it sees what they did: a payment they made is live. NO KEY: what only references these rows
  // (an alert naming the schedule, a payment naming the invoice: their foreign-key checks) is not held
  // up, or a path holding the invoice while it writes such a row would wait for this and this for it.
  await client.query(
    "SELECT 1 FROM payments WHERE invoice_id = $1 AND id <> $2 AND status IN ('processing', 'succeeded') FOR NO KEY UPDATE",
    [payment.invoiceId, payment.id],
  );
  await client.query(
    "SELECT 1 FROM scheduled_payments WHERE invoice_id = $1 AND status IN ('scheduled', 'running') FOR NO KEY UPDATE",
    [payment.invoiceId],
  );
  const { rows: invoices } = await client.query<{ status: InvoiceStatus }>(
    'SELECT status FROM invoices WHERE id = $1 FOR NO KEY UPDATE',
    [payment.invoiceId],
  );
  const invoiceStatus = invoices[0]!.status;
  const { rows: live } = await client.query<{ id: string }>(
    "SELECT id FROM payments WHERE invoice_id = $1 AND id <> $2 AND status IN ('processing', 'succeeded')",
    [payment.invoiceId, payment.id],
  );
  const reference = providerReference ?? payment.providerReference;
  if (live.length === 0) {
    await client.query(
      `UPDATE payments SET status = 'succeeded', recovery_point = 'finished', paid_at = now(), next_check_at = NULL,
              updated_at = now() WHERE id = $1`,
      [payment.id],
    );
    await client.query(
      "UPDATE scheduled_payments SET status = 'cancelled', updated_at = now() WHERE invoice_id = $1 AND status = 'scheduled'",
      [payment.invoiceId],
    );
    if (invoiceStatus === 'approved' || invoiceStatus === 'scheduled') {
      await transitionInvoice(client, payment.invoiceId, invoiceStatus, 'paid');
    }
  }
  await appendAudit(client, {
    tenantId: payment.tenantId,
    actorType: source.actorType,
    actorId: source.actorId,
    action: live.length === 0 ? 'payment.succeeded_after_failure' : 'payment.paid_twice',
    subjectId: payment.id,
    details: {
      invoice_number: payment.invoiceNumber,
      provider_reference: reference,
      other_live_payments: live.map((r) => r.id),
    },
  });
  await createAlert(client, {
    tenantId: payment.tenantId,
    kind: live.length === 0 ? 'payment_succeeded_after_failure' : PAID_TWICE_ALERT_KIND,
    code: 'late_success',
    severity: 'critical',
    paymentId: payment.id,
    message:
      live.length === 0
        ? `The provider reports payment ${payment.confirmationNumber} of invoice ${payment.invoiceNumber} succeeded after paygate recorded it failed (${reference ?? 'no reference'}); the invoice is now paid.`
        : `The provider reports payment ${payment.confirmationNumber} of invoice ${payment.invoiceNumber} succeeded after paygate recorded it failed, and another payment of the invoice is live: the vendor may be paid twice.`,
    nextStep:
      live.length === 0
        ? 'check with the provider; no further payment of this invoice is needed'
        : 'refund one of the two payments (refund_payment, approved by a human) after checking with the provider',
  });
  return { payment: (await getPayment(client, payment.id))!, changed: true };
}
