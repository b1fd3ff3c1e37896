/**
 * MCP URL elicitation (protocol 2025-11-25) for approvals: the server asks the client to open the
 * approval page, then watches the approval in the database until the human decides there. The
 * client's answer to the elicitation only says whether the user agreed to open the page; it is never
 * evidence of approval (and form-mode elicitation is never used for it at all). Only the approval's
 * own status, set by an authenticated human, lets the call complete.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type ApprovalStatus, getApproval } from '../approvals/approvals.js';
import type { Db } from '../db/pool.js';

/**
 * How long a tool call waits for the human. Ten minutes covers a human who is at their desk; past it
 * the agent gets the ordinary approval_required answer and the human can still approve later.
 */
export const DEFAULT_APPROVAL_WAIT_MS = 10 * 60 * 1000;

/** How often the approval's status is read while waiting; one indexed row read per tick. */
export const DEFAULT_APPROVAL_POLL_MS = 1000;

export type Decision = Exclude<ApprovalStatus, 'pending'> | 'timeout';

export interface WaitOptions {
  timeoutMs: number;
  pollMs: number;
  signal?: AbortSignal;
  /** Called on each tick still pending (for progress notifications that keep the client waiting). */
  onTick?: (tick: number) => Promise<void> | void;
}

/** Wait until the approval leaves `pending`, or the time runs out, or the request is cancelled. */
export async function waitForDecision(
  db: Db,
  tenantId: string,
  approvalId: string,
  options: WaitOptions,
): Promise<Decision> {
  const deadline = Date.now() + options.timeoutMs;
  for (let tick = 1; ; tick++) {
    const approval = await db.withTenant(tenantId, (client) => getApproval(client, approvalId));
    // RLS hides other tenants' rows; a vanished approval cannot be completed.
    if (!approval) return 'expired';
    if (approval.status !== 'pending') return approval.status;
    if (Date.now() >= deadline || options.signal?.aborted) return 'timeout';
    await options.onTick?.(tick);
    try {
      await sleep(Math.min(options.pollMs, Math.max(0, deadline - Date.now())), undefined, {
        signal: options.signal,
      });
    } catch {
      return 'timeout';
    }
  }
}
