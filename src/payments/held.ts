/**
 * A payment held for a human: one the reconciler could not tell was made or not (its calls got no
 * answer, and the provider's lookup shows no record it can trust), left `processing` with its invoice
 * blocked and a critical `payment_outcome_unverifiable` alert, rather than failed on a guess that would
 * let the invoice be paid twice. If it was made, the provider's webhook (resent from its dashboard)
 * records it. If a human finds at the provider that it was not, they say so here, and the invoice can be
 * paid again, under a new approval.
 */
import { appendAudit } from '../audit/log.js';
import type { Queryable } from '../db/pool.js';
import { confirmStillAllowed, type User } from '../directory/users.js';
import { RefusedError } from '../errors.js';
import { formatMoney } from '../money.js';
import { createAlert, HELD_ALERT_KIND, PAID_TWICE_ALERT_KIND, ruleFor } from './alerts.js';
import { transitionInvoice } from './invoices.js';
import { applyPaymentOutcome, findPayment, getPayment, type Payment } from './payments.js';

/**
 * Record, on an admin's word, that a held payment was not made: the payment failed (`not_made`), its
 * schedule (if it had one) failed, its invoice approved again (or paid, by an earlier payment of it the
 * provider reported succeeded meanwhile: `paidBy`), every open alert of the payment resolved, an `info`
 * alert saying who decided, and an audit entry; in the caller's tenant transaction. Refused for
 * a payment that is not held: one still being found out by the reconciler, or already decided.
 */
export async function recordHeldPaymentNotMade(
  client: Queryable,
  tenantId: string,
  ref: string,
  admin: User,
  note: string | undefined,
): Promise<{ payment: Payment; paidBy: Payment | null }> {
  if (admin.role !== 'admin') {
    throw new RefusedError(
      'admin_required',
      `${admin.email} is ${admin.role === 'approver' ? 'an approver' : 'a viewer'}; saying a payment was not made puts its invoice up for payment again, which needs an admin`,
    );
  }
  await confirmStillAllowed(client, admin, ['admin']);
  const found = await findPayment(client, ref);
  if (!found) throw new RefusedError('payment_not_found', `no payment "${ref}" in this tenant`);
  // Locked: the reconciler, a webhook or another admin may be deciding it at the same moment.
  const payment = (await getPayment(client, found.id, { forUpdate: true }))!;
  if (payment.status !== 'processing') {
    throw new RefusedError(
      'payment_not_held',
      `payment ${payment.confirmationNumber} is already ${payment.status}; only a payment held as processing can be recorded not made`,
    );
  }
  const { rows: held } = await client.query<{ id: string }>(
    "SELECT id FROM alerts WHERE payment_id = $1 AND kind = $2 AND status = 'open'",
    [payment.id, HELD_ALERT_KIND],
  );
  if (held.length === 0) {
    throw new RefusedError(
      'payment_not_held',
      `payment ${payment.confirmationNumber} is processing and paygate is still finding out what became of it (the worker asks ${payment.provider} again); it is not held for a human`,
      'wait for the worker, or look again with `paygate payments show`',
    );
  }
  const reason = `${admin.email} found at ${payment.provider} that it was not made${note ? `: ${note}` : ''}`;
  await client.query(
    `UPDATE payments SET status = 'failed', recovery_point = 'finished', failure_code = 'not_made',
            failure_message = $2, next_check_at = NULL, updated_at = now()
      WHERE id = $1`,
    [payment.id, reason],
  );
  if (payment.scheduledPaymentId) {
    await client.query(
      "UPDATE scheduled_payments SET status = 'failed', last_error = 'not_made', updated_at = now() WHERE id = $1 AND status = 'running'",
      [payment.scheduledPaymentId],
    );
  }
  await transitionInvoice(client, payment.invoiceId, 'processing', 'approved');
  // A payment of the invoice the provider reported succeeded while this one was live was left failed,
  // with a paid-twice alert: with this one not made, it is the one that paid the invoice. Its success is
  // applied now, so the invoice is paid (not put up for payment again) and that payment refundable.
  const { rows: setAside } = await client.query<{ payment_id: string }>(
    `SELECT DISTINCT a.payment_id FROM alerts a JOIN payments p ON p.id = a.payment_id
      WHERE p.invoice_id = $1 AND p.status = 'failed' AND a.kind = $2 AND a.status = 'open'`,
    [payment.invoiceId, PAID_TWICE_ALERT_KIND],
  );
  const paidBy: Payment[] = [];
  for (const { payment_id } of setAside) {
    const applied = await applyPaymentOutcome(
      client,
      payment_id,
      { status: 'succeeded' },
      {
        actorType: 'user',
        actorId: admin.email,
        note: `reported succeeded while payment ${payment.confirmationNumber} was live, which was not made`,
      },
    );
    if (applied.payment.status === 'succeeded') paidBy.push(applied.payment);
  }
  // The failure's alert, as every failure has one (get_payment_status reads its next step), already
  // dealt with: resolved below with the alert that held the payment.
  await createAlert(client, {
    tenantId,
    kind: 'payment_not_made',
    code: 'not_made',
    severity: 'info',
    message: `payment ${payment.confirmationNumber} (invoice ${payment.invoiceNumber}, ${formatMoney(payment.amountMinor, payment.currency)}) was recorded not made: ${reason}`,
    nextStep: ruleFor('not_made').nextStep,
    paymentId: payment.id,
  });
  const { rows: resolved } = await client.query<{ id: string }>(
    `UPDATE alerts SET status = 'resolved', resolved_at = now()
      WHERE status = 'open' AND (payment_id = $1 OR (payment_id = ANY($2::uuid[]) AND kind = $3))
      RETURNING id`,
    [payment.id, paidBy.map((p) => p.id), PAID_TWICE_ALERT_KIND],
  );
  await appendAudit(client, {
    tenantId,
    actorType: 'user',
    actorId: admin.email,
    action: 'payment.recorded_not_made',
    subjectId: payment.id,
    details: {
      invoice_number: payment.invoiceNumber,
      amount_minor: payment.amountMinor,
      currency: payment.currency,
      provider: payment.provider,
      note: note ?? null,
      alerts_resolved: resolved.map((r) => r.id),
      invoice_paid_by: paidBy.map((p) => p.id),
    },
  });
  return { payment: (await getPayment(client, payment.id))!, paidBy: paidBy[0] ?? null };
}
