/**
 * One agent_runs row per tool invocation (who, what, outcome, duration), and the per-agent-key rate
 * limit on money-moving tools, counted from those rows so it holds across every paygate process.
 */
import { appendAudit } from '../audit/log.js';
import type { Queryable } from '../db/pool.js';
import { readTenant, type Tenant } from '../directory/tenants.js';
import { RefusedError, UsageError } from '../errors.js';
import { MoneyError } from '../money.js';
import type { Caller, EngineDeps } from './context.js';

export const MONEY_MOVING_TOOLS = ['pay_invoice', 'schedule_payment', 'refund_payment'] as const;

function outcomeOf(result: unknown): string {
  if (
    result &&
    typeof result === 'object' &&
    'status' in result &&
    (result as { status: unknown }).status === 'approval_required'
  ) {
    return 'approval_required';
  }
  return 'ok';
}

export async function recordRun<T>(
  deps: Pick<EngineDeps, 'db'>,
  caller: Caller,
  tool: string,
  fn: () => Promise<T>,
): Promise<T> {
  const started = performance.now();
  let outcome = 'ok';
  let errorCode: string | null = null;
  let subjectId: string | null = null;
  let refusal: { code: string; message: string } | null = null;
  try {
    const result = await fn();
    outcome = outcomeOf(result);
    if (result && typeof result === 'object' && 'payment_id' in result)
      subjectId = (result as { payment_id?: string | null }).payment_id ?? null;
    return result;
  } catch (error) {
    if (error instanceof RefusedError) {
      outcome = 'refused';
      errorCode = error.code;
      refusal = { code: error.code, message: error.message };
    } else if (error instanceof UsageError || error instanceof MoneyError) {
      outcome = 'invalid';
      errorCode = error instanceof UsageError ? error.code : 'invalid_amount';
      refusal = { code: errorCode, message: error.message };
    } else {
      outcome = 'error';
      errorCode = 'internal_error';
    }
    throw error;
  } finally {
    const durationMs = Math.round(performance.now() - started);
    await deps.db
      .withTenant(caller.agentKey.tenantId, async (client) => {
        await client.query(
          'INSERT INTO agent_runs (tenant_id, agent_key_id, tool, outcome, error_code, subject_id, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)',
          [caller.agentKey.tenantId, caller.agentKey.id, tool, outcome, errorCode, subjectId, durationMs],
        );
        // Every refusal of a money-moving call is on the record, with the reason the agent was given.
        if (refusal && (MONEY_MOVING_TOOLS as readonly string[]).includes(tool)) {
          await appendAudit(client, {
            tenantId: caller.agentKey.tenantId,
            actorType: 'agent',
            actorId: caller.agentKey.id,
            action: `${tool}.refused`,
            details: refusal,
          });
        }
      })
      .catch(() => {
        // The record of a run must never turn a finished payment into an error.
      });
  }
}

/**
 * The start of every money-moving call, in the caller's transaction: refuse when this key made
 * `rate_limit_per_minute` money-moving calls in the last minute, then read its tenant.
 */
export async function admitMoneyMovingCall(client: Queryable, caller: Caller): Promise<Tenant> {
  const tenantId = caller.agentKey.tenantId;
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM agent_runs WHERE tenant_id = $1 AND agent_key_id = $2 AND tool = ANY($3)
     AND created_at > now() - interval '1 minute'`,
    [tenantId, caller.agentKey.id, MONEY_MOVING_TOOLS],
  );
  if (rows[0]!.n >= caller.agentKey.rateLimitPerMinute) {
    throw new RefusedError(
      'rate_limited',
      `this agent key made ${rows[0]!.n} money-moving calls in the last minute (limit ${caller.agentKey.rateLimitPerMinute})`,
      'wait a minute before calling again; do not loop on approval requests',
      true,
    );
  }
  return readTenant(client, tenantId);
}
