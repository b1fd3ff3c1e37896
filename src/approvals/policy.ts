/**
 * Who may approve what. Pure functions over rows already loaded, so every rule is testable and the
 * reasons are exact: role, per-user approval limit, the human an agent key acts for, one decision per
 * human, and dual control (two distinct approvers at or above the tenant's threshold).
 */
import type { AgentKey } from '../directory/agent-keys.js';
import type { Tenant } from '../directory/tenants.js';
import type { User } from '../directory/users.js';
import { formatMoney } from '../money.js';

export interface ApprovalFacts {
  amountMinor: number;
  currency: string;
  agentKeyId: string;
}

/** 1, or 2 when the tenant's dual-control threshold applies. A different currency counts as above it. */
export function requiredApprovals(tenant: Tenant, amountMinor: number, currency: string): 1 | 2 {
  if (tenant.dualApprovalThresholdMinor === null) return 1;
  if (tenant.dualApprovalCurrency !== currency) return 2;
  return amountMinor >= tenant.dualApprovalThresholdMinor ? 2 : 1;
}

export type Refusal = { code: string; message: string };

/** Why `user` may not approve, or null when they may. */
export function approvalRefusal(
  user: User,
  approval: ApprovalFacts,
  agentKey: Pick<AgentKey, 'actsForUserId'>,
  alreadyApprovedBy: string[],
): Refusal | null {
  if (user.role !== 'approver' && user.role !== 'admin') {
    return {
      code: 'approver_role_required',
      message: `${user.email} is a ${user.role}; only approvers and admins can approve`,
    };
  }
  if (agentKey.actsForUserId === user.id) {
    return {
      code: 'approver_is_requester',
      message: `${user.email} is the human this agent key acts for and cannot approve its requests`,
    };
  }
  if (alreadyApprovedBy.includes(user.id)) {
    return {
      code: 'already_approved_by_you',
      message: `${user.email} already approved this; dual control needs a different approver`,
    };
  }
  if (user.approvalLimitMinor !== null) {
    if (user.approvalLimitCurrency !== approval.currency) {
      return {
        code: 'approval_limit_currency',
        message: `${user.email}'s approval limit is in ${user.approvalLimitCurrency}, this is in ${approval.currency}`,
      };
    }
    if (approval.amountMinor > user.approvalLimitMinor) {
      return {
        code: 'over_approval_limit',
        message: `${formatMoney(approval.amountMinor, approval.currency)} is over ${user.email}'s approval limit of ${formatMoney(user.approvalLimitMinor, approval.currency)}`,
      };
    }
  }
  return null;
}
