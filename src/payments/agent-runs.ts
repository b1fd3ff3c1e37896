/**
 * One agent_runs row per tool invocation (who, what, outcome, duration), and the per-agent-key rate
 * limit on money-moving tools, counted from those rows so it holds across every paygate process.
 */
import { randomUUID } from 'node:crypto';
import { appendAudit } from '../audit/log.js';
import { advisoryLockKey, type Db, PgError, pgErrorCode } from '../db/pool.js';
import { type AgentKey, type AgentKeyRow, agentKeyColumns, toAgentKey } from '../directory/agent-keys.js';
import { prefixedTenantColumns, type Tenant, toPrefixedTenant } from '../directory/tenants.js';
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

/** A call's row in agent_runs: its id is chosen up front so that a money-moving call's admission can write it. */
export interface Run<Tool extends string = string> {
  id: string;
  tool: Tool;
}

/**
 * Run a tool call and write its agent_runs row when it ends: who, what, outcome, duration. A money-moving
 * call's admission has already written the row (`admitMoneyMovingCall`); the end completes it.
 */
export async function recordRun<T, Tool extends string>(
  deps: Pick<EngineDeps, 'db' | 'logger'>,
  caller: Caller,
  tool: Tool,
  fn: (run: Run<Tool>) => Promise<T>,
): Promise<T> {
  const run: Run<Tool> = { id: randomUUID(), tool };
  const started = performance.now();
  let outcome = 'ok';
  let errorCode: string | null = null;
  let subjectId: string | null = null;
  let refusal: { code: string; message: string } | null = null;
  try {
    const result = await fn(run);
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
    // The row is bookkeeping, in one statement whose COMMIT does not wait for the disk: the call's answer
    // need not wait for its flush (a crash could leave it `running`, as a dying process does). A refusal
    // of a money-moving call is on the record too, with the reason the agent was given: row and entry in
    // one transaction that waits for the disk like any audit entry, so that neither is ever written
    // without the other.
    const refusedEntry = refusal && (MONEY_MOVING_TOOLS as readonly string[]).includes(tool) ? refusal : null;
    const tenantId = caller.agentKey.tenantId;
    const finishRun = 'SELECT paygate_finish_run($1, $2, $3, $4, $5, $6, $7, $8)';
    const runValues = [run.id, tenantId, caller.agentKey.id, tool, outcome, errorCode, subjectId, durationMs];
    try {
      if (!refusedEntry) {
        await deps.db.pool.query(finishRun, runValues);
      } else {
        await deps.db.withTenant(tenantId, async (client) => {
          await client.query(finishRun, runValues);
          await appendAudit(client, {
            tenantId,
            actorType: 'agent',
            actorId: caller.agentKey.id,
            action: `${tool}.refused`,
            details: refusedEntry,
          });
        });
      }
    } catch (error) {
      // The record of a run must never turn a finished payment into an error, but a missing record (a
      // refusal's audit entry above all) must not go unnoticed either.
      deps.logger?.warn(
        { err: error, tool, runId: run.id, outcome, refusal: refusedEntry?.code ?? null },
        'the record of an agent call could not be written',
      );
    }
  }
}

/** How long an admission waits for the key's lock before it gives up (a busy refusal, retryable). */
const ADMISSION_LOCK_TIMEOUT = '5s';

/**
 * The admission of every money-moving call, in one statement of its own: refuse when this key made
 * `rate_limit_per_minute` money-moving calls in the last minute, else put this call on the record as
 * `running`, and read the tenant. Admissions of one key queue on a lock until the row is committed, so
 * calls still in flight count and a burst of concurrent calls gets exactly the limit through. The lock is
 * held for that statement only, never across the call's row locks or the audit chain's, so a key's
 * waiting calls cannot tie up the pool behind a slow payment; and should an admission stall (the
 * database session paused inside it), the key's other calls give up after ADMISSION_LOCK_TIMEOUT with a
 * retryable refusal rather than wait. Times are taken after the lock (clock_timestamp), so a call that
 * waited counts from when it got in. `recordRun` completes the row.
 */
export async function admitMoneyMovingCall(db: Db, caller: Caller, run: Run): Promise<Tenant> {
  let admitted: { tenant: Tenant; agentKey: AgentKey };
  try {
    admitted = await admit(db, caller, run);
  } catch (error) {
    // Only a stalled admission (a process paused inside its statement) holds the lock this long.
    if (pgErrorCode(error) === PgError.lockNotAvailable) {
      throw new RefusedError(
        'rate_limited',
        `another money-moving call of this agent key has been starting for over ${ADMISSION_LOCK_TIMEOUT}`,
        'wait a few seconds and call again',
        true,
      );
    }
    throw error;
  }
  // The rest of the call (caps, the human it acts for) goes by the key as it is now. The caller is the
  // session's, so its next calls start from this too (stdio authenticates once, at launch).
  caller.agentKey = admitted.agentKey;
  return admitted.tenant;
}

async function admit(db: Db, caller: Caller, run: Run): Promise<{ tenant: Tenant; agentKey: AgentKey }> {
  const tenantId = caller.agentKey.tenantId;
  // The key as it is now, its tenant, the lock timeout, the key's lock, the count and the call's row, in
  // one statement in autocommit (migrations/025): bookkeeping, whose COMMIT need not wait for the disk.
  // The row is visible to the key's next admission at once, and durable with the call's next commit
  // that writes (it flushes the log up to itself). The key was authenticated when the request arrived,
  // but a call can outlive that: one waiting for a human on the approval page, or any call over stdio,
  // where the key is checked at launch. A key disabled since then has no row here, so nothing is
  // admitted for it; and the rate limit is the key's current one.
  const { rows } = await db.pool.query<AgentKeyRow & { calls: number }>(
    `SELECT a.calls, ${agentKeyColumns('(a.agent_key)')}, ${prefixedTenantColumns('(a.tenant)')}
       FROM paygate_admit($1, $2, $3, $4, $5, $6, $7) a`,
    [
      advisoryLockKey(`rate-limit:${caller.agentKey.id}`),
      ADMISSION_LOCK_TIMEOUT,
      run.id,
      tenantId,
      caller.agentKey.id,
      run.tool,
      MONEY_MOVING_TOOLS,
    ],
  );
  if (!rows[0]) {
    throw new RefusedError(
      'agent_key_disabled',
      'this agent key has been disabled',
      'ask an admin for a new key',
    );
  }
  const { calls, ...row } = rows[0];
  const agentKey = toAgentKey(row);
  if (calls >= agentKey.rateLimitPerMinute) {
    throw new RefusedError(
      'rate_limited',
      `this agent key made ${calls} money-moving calls in the last minute (limit ${agentKey.rateLimitPerMinute})`,
      'wait a minute before calling again; do not loop on approval requests',
      true,
    );
  }
  return { tenant: toPrefixedTenant(row), agentKey };
}
