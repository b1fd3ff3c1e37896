/**
 * What a human approves is a set of canonical parameters; the token is honoured only for a call whose
 * own canonical parameters hash to the same digest. The digest binds tenant, agent and action too, so
 * a token cannot move between tenants, agents or tools. `idempotency_key` is deliberately not part of
 * it: approval binds the action, not the retry.
 */
import { createHash } from 'node:crypto';
import canonicalizeModule from 'canonicalize';

const canonicalize = canonicalizeModule as unknown as (value: unknown) => string | undefined;

export type ApprovalAction = 'pay_invoice' | 'schedule_payment' | 'refund_payment';

/** The payment method is pinned too: a method added after the approval is a different action. */
export type PayParams = {
  invoice_id: string;
  amount_minor: number;
  currency: string;
  method: string;
  payment_method_id: string;
};
export type ScheduleParams = PayParams & { scheduled_date: string };
export type RefundParams = {
  payment_id: string;
  amount_minor: number;
  currency: string;
  reason: string | null;
};

export type ActionParams = PayParams | ScheduleParams | RefundParams;

export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new Error('value cannot be canonicalised');
  return text;
}

export function paramsDigest(binding: {
  tenantId: string;
  agentKeyId: string;
  action: ApprovalAction;
  params: ActionParams;
}): Buffer {
  return createHash('sha256')
    .update(
      canonicalJson({
        tenant_id: binding.tenantId,
        agent_key_id: binding.agentKeyId,
        action: binding.action,
        params: binding.params,
      }),
    )
    .digest();
}
