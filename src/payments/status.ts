/**
 * get_payment_status and cancel_scheduled_payment. Status is read-only unless `refresh` asks the
 * provider (about the payment if it is still processing, and about its pending refunds), whose answer
 * goes through the same state machine as every other report.
 */
import { appendAudit } from '../audit/log.js';
import type { Queryable } from '../db/pool.js';
import { RefusedError, UsageError } from '../errors.js';
import { formatAmount } from '../money.js';
import { recordRun } from './agent-runs.js';
import { listAlerts } from './alerts.js';
import type { Caller, EngineDeps } from './context.js';
import { findInvoice, transitionInvoice } from './invoices.js';
import { findPayment, getPayment, type Payment, paymentJson, paymentsOfInvoice } from './payments.js';
import { reconcilePayment } from './phases.js';
import { refreshPendingRefunds, refundsOf } from './refund.js';

export interface StatusInput {
  payment?: string;
  invoice?: string;
  refresh?: boolean;
}

/** How audit actions read in a payment's history. */
const HISTORY: Record<string, string> = {
  'payment.started': 'processing',
  'payment.processing': 'processing',
  'payment.succeeded': 'paid',
  'payment.failed': 'failed',
  'payment.rescheduled': 'scheduled',
  'payment.stale_outcome_ignored': 'unchanged',
  'refund.started': 'refund_pending',
  'refund.succeeded': 'refunded',
  'refund.pending': 'refund_pending',
  'refund.failed': 'refund_failed',
  'alert.created': 'alert',
};

async function historyOf(client: Queryable, subjectIds: string[]) {
  const { rows } = await client.query<{ at: Date; action: string; content: string }>(
    'SELECT at, action, content FROM audit_log WHERE subject_id = ANY($1) ORDER BY at, seq',
    [subjectIds],
  );
  return rows.map((r) => {
    const details = (JSON.parse(r.content) as { details?: Record<string, unknown> }).details ?? {};
    const note = [
      details.approved_by ? `approved by ${(details.approved_by as string[]).join(' and ')}` : null,
      details.provider_reference ? `provider reference ${String(details.provider_reference)}` : null,
      details.failure
        ? `${(details.failure as { code: string }).code}: ${(details.failure as { message: string }).message}`
        : null,
      details.note ? String(details.note) : null,
      details.scheduled_date ? `for ${String(details.scheduled_date)}` : null,
    ]
      .filter(Boolean)
      .join('; ');
    return { at: r.at.toISOString(), status: HISTORY[r.action] ?? r.action, note: note || r.action };
  });
}

async function scheduledOf(client: Queryable, invoiceId: string) {
  const { rows } = await client.query<{
    id: string;
    scheduled_date: string;
    status: string;
    amount_minor: number;
    currency: string;
    rail: string;
    approved_by: string[];
  }>(
    `SELECT id, to_char(scheduled_date, 'YYYY-MM-DD') AS scheduled_date, status, amount_minor, currency, rail, approved_by
     FROM scheduled_payments WHERE invoice_id = $1 ORDER BY created_at DESC LIMIT 1`,
    [invoiceId],
  );
  return rows[0];
}

export async function getPaymentStatus(deps: EngineDeps, caller: Caller, input: StatusInput) {
  return recordRun(deps, caller, 'get_payment_status', async () => {
    if (!input.payment && !input.invoice)
      throw new UsageError('give either payment (id or provider reference) or invoice (number)');
    // Both: refused, even where they agree. Answering for one and ignoring the other could tell an
    // agent about a payment other than the one it meant; and by invoice means "the invoice's latest
    // payment or schedule", by payment "this payment", which need not be the same. Refusing on the
    // input alone (no lookup) makes the answer the same whatever the data says.
    if (input.payment && input.invoice)
      throw new UsageError(
        'give payment or invoice, not both: get_payment_status answers for one of them',
        'invalid_input',
        'call again with only payment (a payment_id or provider reference) for that payment, or only invoice (an invoice number) for the latest payment or schedule of that invoice',
      );
    const tenantId = caller.agentKey.tenantId;
    const located = await deps.db.withTenant(tenantId, async (client) => {
      if (input.payment) return { payment: await findPayment(client, input.payment), invoice: null };
      const invoice = await findInvoice(client, input.invoice!);
      if (!invoice) return { payment: null, invoice: null };
      return { payment: (await paymentsOfInvoice(client, invoice.id))[0] ?? null, invoice };
    });
    let payment: Payment | null = located.payment;
    if (!payment && located.invoice) {
      const invoice = located.invoice;
      const scheduled = await deps.db.withTenant(tenantId, async (client) => {
        const s = await scheduledOf(client, invoice.id);
        return s ? { s, history: await historyOf(client, [s.id]) } : null;
      });
      return {
        invoice_id: invoice.id,
        invoice_number: invoice.number,
        payee: invoice.vendorName,
        amount: formatAmount(invoice.amountMinor, invoice.currency),
        amount_minor: invoice.amountMinor,
        currency: invoice.currency,
        status: scheduled ? scheduled.s.status : `invoice_${invoice.status}`,
        payment_id: null,
        scheduled_payment_id: scheduled?.s.id ?? null,
        scheduled_date: scheduled?.s.scheduled_date ?? null,
        payment_method: scheduled?.s.rail ?? null,
        approved_by: scheduled?.s.approved_by[0] ?? null,
        history: scheduled?.history ?? [],
        refunds: [],
      };
    }
    if (!payment) {
      throw new RefusedError(
        'payment_not_found',
        `no payment or invoice "${input.payment ?? input.invoice}" in this tenant`,
        'use the payment_id or invoice number',
      );
    }
    if (input.refresh && payment.status === 'processing') {
      payment = await reconcilePayment(deps, tenantId, payment.id, {
        notSubmittedAfterMs: Number.POSITIVE_INFINITY,
      });
    }
    if (input.refresh && payment.pendingRefundMinor > 0) {
      // Its pending refunds are asked about too (a lookup, never a new refund): a refund whose webhook
      // was lost would otherwise read pending here forever.
      const id = payment.id;
      await refreshPendingRefunds(deps, tenantId, id);
      payment = (await deps.db.withTenant(tenantId, (client) => getPayment(client, id)))!;
    }
    const p = payment;
    return deps.db.withTenant(tenantId, async (client) => {
      const refunds = await refundsOf(client, p.id);
      const alerts = await listAlerts(client, { paymentId: p.id });
      const failureAlert = alerts.find((a) => a.code === p.failureCode) ?? alerts[0];
      const analysis = failureAlert?.analysis as Record<string, unknown> | null | undefined;
      return {
        ...paymentJson(p),
        history: await historyOf(client, [
          p.id,
          ...(p.scheduledPaymentId ? [p.scheduledPaymentId] : []),
          ...refunds.map((r) => r.refund_id),
        ]),
        refunds,
        failure: p.failureCode
          ? {
              code: p.failureCode,
              provider_code: p.failureProviderCode,
              message: p.failureMessage ?? '',
              next_step: failureAlert?.next_step ?? null,
              ...(analysis ? { analysis } : {}),
            }
          : undefined,
      };
    });
  });
}

export interface CancelInput {
  scheduled_payment?: string;
  invoice?: string;
}

/** Cancelling moves no money, so it needs no approval; it is audited like everything else. */
export async function cancelScheduledPayment(deps: EngineDeps, caller: Caller, input: CancelInput) {
  return recordRun(deps, caller, 'cancel_scheduled_payment', async () => {
    const tenantId = caller.agentKey.tenantId;
    return deps.db.withTenant(tenantId, (client) =>
      cancelSchedule(client, tenantId, input, { actorType: 'agent', actorId: caller.agentKey.id }),
    );
  });
}

/**
 * Cancel a schedule still waiting for its date, in the caller's tenant transaction: the agent's tool,
 * or a human on the CLI (`paygate schedules cancel`), who may stop what an agent key scheduled (a key
 * disabled after its schedules were approved, say). The invoice goes back to approved.
 */
export async function cancelSchedule(
  client: Queryable,
  tenantId: string,
  input: CancelInput,
  actor: { actorType: 'agent' | 'user'; actorId: string },
) {
  if (!input.scheduled_payment && !input.invoice)
    throw new UsageError('give scheduled_payment (id) or invoice (number)');
  let invoiceId: string | undefined;
  if (input.invoice) invoiceId = (await findInvoice(client, input.invoice))?.id;
  const { rows } = await client.query<{
    id: string;
    invoice_id: string;
    status: string;
    scheduled_date: string;
  }>(
    `SELECT id, invoice_id, status, to_char(scheduled_date, 'YYYY-MM-DD') AS scheduled_date FROM scheduled_payments
     WHERE ${input.scheduled_payment ? 'id::text = $1' : 'invoice_id = $1::uuid'} ORDER BY created_at DESC LIMIT 1 FOR UPDATE`,
    [input.scheduled_payment ?? invoiceId ?? '00000000-0000-0000-0000-000000000000'],
  );
  const s = rows[0];
  if (!s)
    throw new RefusedError(
      'scheduled_payment_not_found',
      'no scheduled payment matches',
      'call get_payment_status for the invoice',
    );
  if (s.status !== 'scheduled') {
    throw new RefusedError(
      'not_cancellable',
      `the scheduled payment is ${s.status}; only a payment still waiting for its date can be cancelled`,
    );
  }
  await client.query("UPDATE scheduled_payments SET status = 'cancelled', updated_at = now() WHERE id = $1", [
    s.id,
  ]);
  await transitionInvoice(client, s.invoice_id, 'scheduled', 'approved');
  await appendAudit(client, {
    tenantId,
    ...actor,
    action: 'payment.schedule_cancelled',
    subjectId: s.id,
    details: { scheduled_date: s.scheduled_date },
  });
  return {
    success: true as const,
    status: 'cancelled' as const,
    scheduled_payment_id: s.id,
    scheduled_date: s.scheduled_date,
    invoice_id: s.invoice_id,
  };
}
