/**
 * Approval requests and their lifecycle: pending -> approved (token minted) -> consumed, or pending ->
 * rejected | expired, or approved -> rejected (revoked before the token was used). The token is shown
 * once and stored only as a hash; consuming it is one UPDATE that succeeds for exactly one caller,
 * inside the transaction that starts the payment.
 */
import { appendAudit } from '../audit/log.js';
import { type Db, isUuid, type Queryable } from '../db/pool.js';
import type { AgentKey } from '../directory/agent-keys.js';
import { hashSecret, looksLike, newSecret } from '../directory/credentials.js';
import { getTenant } from '../directory/tenants.js';
import { currentUser, type User } from '../directory/users.js';
import { RefusedError } from '../errors.js';
import { formatAmount } from '../money.js';
import { type ActionParams, type ApprovalAction, paramsDigest } from './canonical.js';
import { type ApprovalFacts, approvalRefusal, requiredApprovals } from './policy.js';

/** How long a request waits for a human before it expires (DESIGN: 24 h by default). */
export const APPROVAL_TTL_MS = 24 * 60 * 60 * 1000;

export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'expired' | 'consumed';

export interface Approval {
  id: string;
  tenantId: string;
  action: ApprovalAction;
  params: ActionParams;
  agentKeyId: string;
  requestedApprover: string | null;
  summary: string;
  amountMinor: number;
  currency: string;
  requiredApprovals: number;
  status: ApprovalStatus;
  expiresAt: Date;
  createdAt: Date;
  decidedAt: Date | null;
  approvedBy: string[];
}

interface ApprovalRow {
  id: string;
  tenant_id: string;
  action: ApprovalAction;
  params: ActionParams;
  agent_key_id: string;
  requested_approver: string | null;
  summary: string;
  amount_minor: number;
  currency: string;
  required_approvals: number;
  status: ApprovalStatus;
  expires_at: Date;
  created_at: Date;
  decided_at: Date | null;
  approved_by: string[] | null;
}

const SELECT_APPROVAL = `SELECT a.id, a.tenant_id, a.action, a.params, a.agent_key_id, a.requested_approver, a.summary,
  a.amount_minor, a.currency, a.required_approvals,
  CASE WHEN a.status = 'pending' AND a.expires_at <= now() THEN 'expired' ELSE a.status END AS status,
  a.expires_at, a.created_at, a.decided_at,
  (SELECT array_agg(u.email ORDER BY d.decided_at) FROM approval_decisions d JOIN users u ON u.id = d.user_id
    WHERE d.approval_id = a.id AND d.decision = 'approve') AS approved_by
  FROM approvals a`;

function toApproval(r: ApprovalRow): Approval {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    action: r.action,
    params: r.params,
    agentKeyId: r.agent_key_id,
    requestedApprover: r.requested_approver,
    summary: r.summary,
    amountMinor: r.amount_minor,
    currency: r.currency.trim(),
    requiredApprovals: r.required_approvals,
    status: r.status,
    expiresAt: r.expires_at,
    createdAt: r.created_at,
    decidedAt: r.decided_at,
    approvedBy: r.approved_by ?? [],
  };
}

export function approvalJson(a: Approval) {
  return {
    approval_id: a.id,
    action: a.action,
    summary: a.summary,
    amount: formatAmount(a.amountMinor, a.currency),
    currency: a.currency,
    status: a.status,
    expires_at: a.expiresAt.toISOString(),
    required_approvals: a.requiredApprovals,
    approved_by: a.approvedBy,
    requested_approver: a.requestedApprover,
    created_at: a.createdAt.toISOString(),
  };
}

export async function getApproval(client: Queryable, id: string): Promise<Approval | null> {
  if (!isUuid(id)) return null;
  const { rows } = await client.query<ApprovalRow>(`${SELECT_APPROVAL} WHERE a.id = $1`, [id]);
  return rows[0] ? toApproval(rows[0]) : null;
}

/**
 * The newest 500 requests that match. The filters run in SQL before the limit: filtered afterwards, a
 * pending request behind 500 newer ones of other statuses (or of other agent keys) would vanish from
 * the human's pending list and the agent's own. A pending request past its expiry counts as expired.
 */
export async function listApprovals(
  client: Queryable,
  filter: { status?: ApprovalStatus; agentKeyId?: string } = {},
): Promise<Approval[]> {
  const { rows } = await client.query<ApprovalRow>(
    `${SELECT_APPROVAL}
     WHERE ($1::text IS NULL
            OR ($1 = 'pending' AND a.status = 'pending' AND a.expires_at > now())
            OR ($1 = 'expired' AND (a.status = 'expired' OR (a.status = 'pending' AND a.expires_at <= now())))
            OR ($1 NOT IN ('pending', 'expired') AND a.status = $1))
       AND ($2::uuid IS NULL OR a.agent_key_id = $2)
     ORDER BY a.created_at DESC LIMIT 500`,
    [filter.status ?? null, filter.agentKeyId ?? null],
  );
  return rows.map(toApproval);
}

export interface ApprovalRequest {
  tenantId: string;
  agentKeyId: string;
  action: ApprovalAction;
  params: ActionParams;
  amountMinor: number;
  currency: string;
  summary: string;
  requestedApprover?: string;
  requiredApprovals: 1 | 2;
}

/** Create the pending request, or return the existing identical one (same agent, action, parameters). */
export async function requestApproval(
  client: Queryable,
  request: ApprovalRequest,
): Promise<{ approval: Approval; created: boolean }> {
  const digest = paramsDigest(request);
  // A pending request past its expiry no longer counts: mark it expired so a fresh one can be made. The
  // worker would have audited the expiry; it no longer sees the row, so it is audited here.
  const expired = await client.query<{ id: string }>(
    `UPDATE approvals SET status = 'expired', decided_at = now()
     WHERE tenant_id = $1 AND agent_key_id = $2 AND action = $3 AND params_digest = $4 AND status = 'pending' AND expires_at <= now()
     RETURNING id`,
    [request.tenantId, request.agentKeyId, request.action, digest],
  );
  for (const row of expired.rows) {
    await appendAudit(client, {
      tenantId: request.tenantId,
      actorType: 'system',
      actorId: 'engine',
      action: 'approval.expired',
      subjectId: row.id,
    });
  }
  const inserted = await client.query<{ id: string }>(
    `INSERT INTO approvals (tenant_id, action, params, params_digest, agent_key_id, requested_approver, summary,
                            amount_minor, currency, required_approvals, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11))
     ON CONFLICT (tenant_id, agent_key_id, action, params_digest) WHERE status = 'pending' DO NOTHING
     RETURNING id`,
    [
      request.tenantId,
      request.action,
      JSON.stringify(request.params),
      digest,
      request.agentKeyId,
      request.requestedApprover ?? null,
      request.summary,
      request.amountMinor,
      request.currency,
      request.requiredApprovals,
      APPROVAL_TTL_MS / 1000,
    ],
  );
  const created = inserted.rowCount === 1;
  const { rows } = created
    ? await client.query<ApprovalRow>(`${SELECT_APPROVAL} WHERE a.id = $1`, [inserted.rows[0]!.id])
    : await client.query<ApprovalRow>(
        `${SELECT_APPROVAL} WHERE a.tenant_id = $1 AND a.agent_key_id = $2 AND a.action = $3 AND a.params_digest = $4 AND a.status = 'pending'`,
        [request.tenantId, request.agentKeyId, request.action, digest],
      );
  const approval = toApproval(rows[0]!);
  if (created) {
    await appendAudit(client, {
      tenantId: request.tenantId,
      actorType: 'agent',
      actorId: request.agentKeyId,
      action: 'approval.requested',
      subjectId: approval.id,
      details: {
        action: request.action,
        params: request.params,
        summary: request.summary,
        required_approvals: request.requiredApprovals,
      },
    });
  }
  return { approval, created };
}

export interface DecisionResult {
  approval: Approval;
  /** The approval token, present exactly once: when this decision completed the approval. */
  approvalToken?: string;
  /** Who approved and still counts (this decision included), and why the others no longer do. */
  standing: ApprovalStanding;
}

/** An approval's decisions as they count now: `counted` by email, `lapsed` as reasons. */
export interface ApprovalStanding {
  counted: string[];
  lapsed: string[];
}

/**
 * Whose approvals of a request count now (an approver disabled, demoted or given a lower limit since
 * no longer does): what a human is told about a request's progress, so that "2 of 2" is never said of
 * one that a lapsed decision keeps pending.
 */
export async function approvalStanding(client: Queryable, approvalId: string): Promise<ApprovalStanding> {
  const { standing: stand, lapsed } = standing(await approversOf(client, approvalId));
  return { counted: stand.map((u) => u.email), lapsed };
}

async function loadForDecision(
  client: Queryable,
  approvalId: string,
  user: User,
  decidable: readonly ApprovalStatus[] = ['pending'],
): Promise<Approval> {
  // Not a uuid: no such approval (the database would refuse the cast with its own words).
  if (!isUuid(approvalId))
    throw new RefusedError('approval_not_found', `no approval ${approvalId} in ${user.email}'s tenant`);
  const { rows } = await client.query<ApprovalRow>(`${SELECT_APPROVAL} WHERE a.id = $1 FOR UPDATE OF a`, [
    approvalId,
  ]);
  if (!rows[0])
    throw new RefusedError('approval_not_found', `no approval ${approvalId} in ${user.email}'s tenant`);
  const approval = toApproval(rows[0]);
  // Past its expiry (toApproval reads it so): refused. The row itself is marked, with its audit entry, by
  // the worker or the agent's next request; here the refusal rolls the transaction back anyway.
  if (approval.status === 'expired') {
    throw new RefusedError(
      'approval_expired',
      `approval ${approvalId} expired at ${approval.expiresAt.toISOString()}`,
      'the agent must ask again',
    );
  }
  if (!decidable.includes(approval.status)) {
    throw new RefusedError('approval_not_pending', `approval ${approvalId} is already ${approval.status}`);
  }
  return approval;
}

interface Approvers {
  /** What the approval is for, and the human its agent key acts for (who may never approve it). */
  facts: ApprovalFacts & { requiredApprovals: number; actsForUserId: string | null };
  /** Who approved it so far, in order, as they are now. */
  approvers: { user: User; disabled: boolean }[];
}

/** An approval's facts and its approvers as they are now, in one round trip. */
async function approversOf(client: Queryable, approvalId: string): Promise<Approvers> {
  const { rows } = await client.query<{
    amount_minor: string | number;
    currency: string;
    agent_key_id: string;
    required_approvals: number;
    acts_for_user_id: string | null;
    id: string | null;
    tenant_id: string;
    email: string;
    role: User['role'];
    approval_limit_minor: string | number | null;
    approval_limit_currency: string | null;
    disabled: boolean;
  }>(
    `SELECT a.amount_minor, a.currency, a.agent_key_id, a.required_approvals, k.acts_for_user_id,
            u.id, u.tenant_id, u.email, u.role, u.approval_limit_minor, u.approval_limit_currency,
            u.disabled_at IS NOT NULL AS disabled
       FROM approvals a JOIN agent_keys k ON k.id = a.agent_key_id
       LEFT JOIN approval_decisions d ON d.approval_id = a.id AND d.decision = 'approve'
       LEFT JOIN users u ON u.id = d.user_id
      WHERE a.id = $1 ORDER BY d.decided_at`,
    [approvalId],
  );
  const first = rows[0]!;
  return {
    facts: {
      amountMinor: Number(first.amount_minor),
      currency: first.currency.trim(),
      agentKeyId: first.agent_key_id,
      requiredApprovals: first.required_approvals,
      actsForUserId: first.acts_for_user_id,
    },
    approvers: rows.flatMap((r) =>
      r.id === null
        ? []
        : [
            {
              user: {
                id: r.id,
                tenantId: r.tenant_id,
                email: r.email,
                role: r.role,
                approvalLimitMinor: r.approval_limit_minor === null ? null : Number(r.approval_limit_minor),
                approvalLimitCurrency: r.approval_limit_currency?.trim() ?? null,
              },
              disabled: r.disabled,
            },
          ],
    ),
  };
}

/**
 * The approvals that still stand, and why the others lapsed: a human's approval counts only while they
 * may still give it (not disabled, an approver or admin, within their limit, not the human the agent
 * key acts for). A right lost between the decision and the money moving (a human let go, demoted, or
 * given a lower limit) takes that decision back, for dual control and for the token.
 */
function standing({ facts, approvers }: Approvers): { standing: User[]; lapsed: string[] } {
  const stand: User[] = [];
  const lapsed: string[] = [];
  for (const { user, disabled } of approvers) {
    const refusal = disabled
      ? { message: `${user.email} has been disabled` }
      : approvalRefusal(user, facts, { actsForUserId: facts.actsForUserId }, []);
    if (refusal) lapsed.push(refusal.message);
    else stand.push(user);
  }
  return { standing: stand, lapsed };
}

/** Record a human's approval; mint the token when the last required approval arrives. */
export async function approve(
  db: Db,
  tenantId: string,
  user: User,
  approvalId: string,
): Promise<DecisionResult> {
  const tenant = await getTenant(db, tenantId);
  try {
    return await db.withTenant(tenantId, async (client) => {
      // The human as they are now: their role or limit may have changed since they signed in.
      const approver = await currentUser(client, user);
      const approval = await loadForDecision(client, approvalId, approver);
      const prior = await approversOf(client, approvalId);
      const refusal = approvalRefusal(
        approver,
        approval,
        { actsForUserId: prior.facts.actsForUserId },
        prior.approvers.map((p) => p.user.id),
      );
      if (refusal) throw new RefusedError(refusal.code, refusal.message, 'ask another approver');
      // The threshold may have changed since the request: the stricter of the two applies.
      const needed = Math.max(
        approval.requiredApprovals,
        requiredApprovals(tenant, approval.amountMinor, approval.currency),
      );
      await client.query(
        "INSERT INTO approval_decisions (approval_id, tenant_id, user_id, decision) VALUES ($1, $2, $3, 'approve')",
        [approvalId, tenantId, user.id],
      );
      // This one, and the earlier ones that still stand: a lapsed one does not count towards dual control.
      const count = standing(prior).standing.length + 1;
      let approvalToken: string | undefined;
      if (count >= needed) {
        approvalToken = newSecret('apt');
        await client.query(
          "UPDATE approvals SET status = 'approved', token_hash = $2, decided_at = now() WHERE id = $1",
          [approvalId, hashSecret(approvalToken)],
        );
      }
      await appendAudit(client, {
        tenantId,
        actorType: 'user',
        actorId: user.email,
        action: approvalToken ? 'approval.approved' : 'approval.partially_approved',
        subjectId: approvalId,
        details: {
          approvals: count,
          required: needed,
          amount_minor: approval.amountMinor,
          currency: approval.currency,
        },
      });
      return {
        approval: (await getApproval(client, approvalId))!,
        approvalToken,
        standing: await approvalStanding(client, approvalId),
      };
    });
  } catch (error) {
    // Every refused decision is on the record.
    if (error instanceof RefusedError) {
      await auditDecisionRefused(db, tenantId, user, approvalId, {
        code: error.code,
        message: error.message,
      });
    }
    throw error;
  }
}

/** A human's refused decision on the record, in its own transaction (the decision's has rolled back). */
export function auditDecisionRefused(
  db: Db,
  tenantId: string,
  user: User,
  approvalId: string,
  details: Record<string, unknown>,
): Promise<void> {
  return db.withTenant(tenantId, (client) =>
    appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: user.email,
      action: 'approval.decision_refused',
      subjectId: isUuid(approvalId) ? approvalId : null,
      details,
    }),
  );
}

export async function reject(
  db: Db,
  tenantId: string,
  user: User,
  approvalId: string,
  reason?: string,
): Promise<Approval & { revoked: boolean }> {
  if (user.role !== 'approver' && user.role !== 'admin') {
    throw new RefusedError(
      'approver_role_required',
      `${user.email} is a ${user.role}; only approvers and admins can reject`,
    );
  }
  return db.withTenant(tenantId, async (client) => {
    const rejecter = await currentUser(client, user);
    if (rejecter.role !== 'approver' && rejecter.role !== 'admin')
      throw new RefusedError(
        'approver_role_required',
        `${user.email} is now a ${rejecter.role}; only approvers and admins can reject`,
      );
    // An approved request whose token nobody has used yet can still be taken back (a human changed
    // their mind, or suspects the token leaked): the row lock taken here makes a concurrent consume
    // wait, and its `status = 'approved'` re-check then fails.
    const before = await loadForDecision(client, approvalId, user, ['pending', 'approved']);
    const revoking = before.status === 'approved';
    // A revocation keeps the approvals that were given (they are history); a pending rejection
    // replaces this person's earlier partial approval, as before.
    await client.query(
      `INSERT INTO approval_decisions (approval_id, tenant_id, user_id, decision, reason) VALUES ($1, $2, $3, 'reject', $4)
       ON CONFLICT (approval_id, user_id) DO ${
         revoking ? 'NOTHING' : "UPDATE SET decision = 'reject', reason = EXCLUDED.reason, decided_at = now()"
       }`,
      [approvalId, tenantId, user.id, reason ?? null],
    );
    // Clearing token_hash is what makes the token stop working (consumeApprovalToken finds it by hash).
    await client.query(
      "UPDATE approvals SET status = 'rejected', token_hash = NULL, decided_at = now() WHERE id = $1",
      [approvalId],
    );
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: user.email,
      action: revoking ? 'approval.revoked' : 'approval.rejected',
      subjectId: approvalId,
      details: revoking
        ? { reason: reason ?? null, approved_by: before.approvedBy }
        : { reason: reason ?? null },
    });
    return { ...(await getApproval(client, approvalId))!, revoked: revoking };
  });
}

/**
 * What the caller presents as evidence of approval: the token a human handed to the agent, or, when
 * this server itself watched the human approve this very request (MCP URL elicitation), the approval's
 * id. Either way every binding below is checked; a tool argument is never evidence.
 */
export type ApprovalEvidence = { token: string } | { approvalId: string };

export interface ConsumedApproval {
  id: string;
  approvedBy: string[];
}

/**
 * Verify and consume a token inside the caller's (phase 1) transaction. Exactly one concurrent caller
 * can consume a token: the UPDATE's WHERE re-checks `status = 'approved'` after waiting for the row lock.
 * Throws a RefusedError saying why otherwise; the caller audits the refusal after its rollback.
 */
export async function consumeApprovalToken(
  client: Queryable,
  binding: {
    tenantId: string;
    agentKey: AgentKey;
    action: ApprovalAction;
    params: ActionParams;
  } & ApprovalEvidence,
): Promise<ConsumedApproval> {
  let rows: {
    id: string;
    status: ApprovalStatus;
    expired: boolean;
    agent_key_id: string;
    action: string;
    params_digest: Buffer;
  }[];
  const select =
    'SELECT id, status, expires_at <= now() AS expired, agent_key_id, action, params_digest FROM approvals';
  if ('approvalId' in binding) {
    ({ rows } = await client.query(`${select} WHERE id = $1 FOR UPDATE`, [binding.approvalId]));
  } else {
    if (!looksLike('apt', binding.token)) {
      throw new RefusedError(
        'invalid_approval_token',
        'that is not an approval token (they start with apt_)',
        'ask a human to approve at the approve_url',
      );
    }
    ({ rows } = await client.query(`${select} WHERE token_hash = $1 FOR UPDATE`, [
      hashSecret(binding.token),
    ]));
  }
  const row = rows[0];
  // RLS hides other tenants' approvals: a token of another tenant is simply unknown here.
  if (!row)
    throw new RefusedError(
      'invalid_approval_token',
      'the approval token is not valid for this tenant',
      'ask a human to approve at the approve_url',
    );
  if (row.status === 'consumed')
    throw new RefusedError(
      'approval_token_used',
      'the approval token was already used',
      'each approval pays once; request a new approval',
    );
  if (row.status !== 'approved')
    throw new RefusedError('approval_token_invalid_state', `the approval is ${row.status}`);
  if (row.expired)
    throw new RefusedError(
      'approval_token_expired',
      'the approval token has expired',
      'request a new approval',
    );
  if (row.agent_key_id !== binding.agentKey.id) {
    throw new RefusedError(
      'approval_token_other_agent',
      'the approval token was issued to another agent',
      'request your own approval',
    );
  }
  const digest = paramsDigest({
    tenantId: binding.tenantId,
    agentKeyId: binding.agentKey.id,
    action: binding.action,
    params: binding.params,
  });
  if (row.action !== binding.action || !row.params_digest.equals(digest)) {
    throw new RefusedError(
      'approval_token_mismatch',
      'the approval token was issued for a different action or different parameters (invoice, amount, currency, method, date or reason)',
      'call again with exactly the approved parameters, or request a new approval',
    );
  }
  // The humans who approved must still be allowed to: an approval whose approvers lost the right since
  // (disabled, demoted, a lower limit) no longer moves money. A statement of its own, after the lock: in
  // the locking statement, one that waited for the lock would re-read the approval row only, and its
  // approvers as they were before the wait (an approver disabled meanwhile would still count).
  const approval = await approversOf(client, row.id);
  const { standing: stand, lapsed } = standing(approval);
  if (stand.length < approval.facts.requiredApprovals) {
    throw new RefusedError(
      'approval_lapsed',
      `the approval no longer stands (${lapsed.join('; ')}): whoever approved must still be allowed to when the money moves`,
      'request a new approval and ask a human who may approve it now',
    );
  }
  const updated = await client.query(
    "UPDATE approvals SET status = 'consumed', consumed_at = now() WHERE id = $1 AND status = 'approved'",
    [row.id],
  );
  if (updated.rowCount !== 1)
    throw new RefusedError('approval_token_used', 'the approval token was already used');
  // Written at the caller's commit (src/audit/log.ts), so its place here holds no lock any longer.
  await appendAudit(client, {
    tenantId: binding.tenantId,
    actorType: 'agent',
    actorId: binding.agentKey.id,
    action: 'approval.consumed',
    subjectId: row.id,
    details: { action: binding.action },
  });
  return { id: row.id, approvedBy: approval.approvers.map((a) => a.user.email) };
}

/** Mark every pending request past its expiry as expired, with an audit entry each (worker job). */
export async function expireStaleApprovals(db: Db): Promise<number> {
  return db.withSystem(async (client) => {
    const { rows } = await client.query<{ id: string; tenant_id: string }>(
      "UPDATE approvals SET status = 'expired', decided_at = now() WHERE status = 'pending' AND expires_at <= now() RETURNING id, tenant_id",
    );
    for (const r of rows) {
      await appendAudit(client, {
        tenantId: r.tenant_id,
        actorType: 'system',
        actorId: 'worker',
        action: 'approval.expired',
        subjectId: r.id,
      });
    }
    return rows.length;
  });
}
