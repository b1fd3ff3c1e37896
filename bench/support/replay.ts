/**
 * The bare-SQL baseline of one payment: the statements captured for one payment (the engine's, and in
 * the pay bench also the server's key check and webhook store), BEGIN and COMMIT included, in the same
 * transactions, and a statement run in autocommit in autocommit, on a pool that connects as paygate_app
 * like the engine's, replayed with `pg` for another payment. The ids that differ between payments
 * (invoice, approval, token hash, payment, confirmation number, provider reference, the call's
 * agent_runs id and its key's rate-limit lock, the key's hash, the provider's event id) are substituted,
 * also inside the audit entries' and the event's content (the database chains the entries, so every
 * replayed entry really lands). No provider call, no validation, no JSON shaping: only the SQL.
 */
import type pg from 'pg';
import { advisoryLockKey } from '../../src/db/pool.js';
import type { Captured } from './capture.js';

/** The values that tell one replayed unit of work (a payment, an event, a batch) from another. */
export interface Identity {
  strings: Record<string, string>;
  buffers?: Record<string, Buffer>;
  /**
   * A batch smaller than the captured one: the captured ids (UUIDs) of the positions it lacks. An
   * array parameter's elements that mention one are dropped, with the elements at the same places in
   * the statement's other arrays of that length (the parallel columns of an unnest).
   */
  absent?: string[];
}

export interface PaymentIdentity {
  invoiceId: string;
  invoiceNumber: string;
  approvalId: string;
  tokenHash: Buffer;
  paymentId: string;
  confirmationNumber: string;
  providerReference: string;
  /** The call's agent_runs row, written when the call is admitted and completed when it ends. */
  runId: string;
  /** The tenant's rows (needed when the replayed payment is in another tenant than the captured one). */
  tenantId: string;
  agentKeyId: string;
  paymentMethodId: string;
  counterpartyId: string;
  /** The agent key's hash, which the server's per-request key check looks up (when it is replayed). */
  agentKeyHash?: Buffer;
  /** The provider's event confirming the payment, which the server's sidecar stores (when replayed). */
  eventId?: string;
}

export function paymentIdentity(p: PaymentIdentity): Identity {
  return {
    strings: {
      tenantId: p.tenantId,
      agentKeyId: p.agentKeyId,
      paymentMethodId: p.paymentMethodId,
      counterpartyId: p.counterpartyId,
      invoiceId: p.invoiceId,
      invoiceNumber: p.invoiceNumber,
      approvalId: p.approvalId,
      paymentId: p.paymentId,
      confirmationNumber: p.confirmationNumber,
      providerReference: p.providerReference,
      runId: p.runId,
      // The lock that queues one agent key's admissions (src/payments/agent-runs.ts).
      rateLimitLock: advisoryLockKey(`rate-limit:${p.agentKeyId}`),
      ...(p.eventId ? { eventId: p.eventId } : {}),
    },
    buffers: { tokenHash: p.tokenHash, ...(p.agentKeyHash ? { agentKeyHash: p.agentKeyHash } : {}) },
  };
}

/** The id of the agent_runs row a captured call wrote when it was admitted (paygate_admit's third argument). */
export function capturedRunId(template: Captured[]): string {
  const admitted = template.find((s) => /\bFROM paygate_admit\(/.test(s.text));
  if (!admitted) throw new Error('the captured payment was not admitted (no paygate_admit)');
  return String(admitted.values[2]);
}

function substituter(from: Identity, to: Identity) {
  const swaps = new Map<string, string>();
  for (const [k, v] of Object.entries(from.strings)) if (k in to.strings) swaps.set(v, to.strings[k]!);
  // One pass over each string (a batch's statements carry hundreds of ids), longest first, so that a
  // value that contains another (INV-10 and INV-1) is swapped whole.
  let pattern: RegExp | undefined;
  const add = (a: string, b: string) => {
    swaps.set(a, b);
    pattern = undefined;
  };
  const buffers = Object.entries(from.buffers ?? {}).map(([k, v]) => [v, to.buffers![k]!] as const);
  const swap = (value: unknown): unknown => {
    if (typeof value === 'string' && swaps.size > 0) {
      pattern ??= new RegExp(
        [...swaps.keys()]
          .sort((a, b) => b.length - a.length)
          .map((a) => a.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
          .join('|'),
        'g',
      );
      return value.replace(pattern, (a) => swaps.get(a)!);
    }
    if (Buffer.isBuffer(value)) return buffers.find(([a]) => a.equals(value))?.[1] ?? value;
    if (Array.isArray(value)) return value.map(swap);
    return value;
  };
  return { swap, add };
}

/** `values` without the array elements that belong to the absent positions (see Identity.absent). */
function withoutAbsent(values: unknown[], absent: readonly string[]): unknown[] {
  if (absent.length === 0) return values;
  const mentions = (x: unknown) => typeof x === 'string' && absent.some((id) => x.includes(id));
  const drop = new Map<number, Set<number>>();
  for (const v of values) {
    if (!Array.isArray(v)) continue;
    v.forEach((x, i) => {
      if (!mentions(x)) return;
      if (!drop.has(v.length)) drop.set(v.length, new Set());
      drop.get(v.length)!.add(i);
    });
  }
  return values.map((v) => {
    const gone = Array.isArray(v) ? drop.get(v.length) : undefined;
    return gone ? (v as unknown[]).filter((_, i) => !gone.has(i)) : v;
  });
}

/** Replay `template` (captured for `from`) as `to`. */
export async function replay(
  pool: pg.Pool,
  template: readonly Captured[],
  from: Identity,
  to: Identity,
): Promise<void> {
  const { swap, add } = substituter(from, to);
  let client: pg.PoolClient | undefined;
  try {
    for (const statement of template) {
      if (statement.text.startsWith('BEGIN')) client = await pool.connect();
      const values = withoutAbsent(statement.values, to.absent ?? []).map(swap);
      // The tenant id is inlined in the statement that opens a tenant transaction: swap it there too.
      // A statement outside a transaction ran in autocommit (pool.query), and is replayed so.
      const answer: pg.QueryResult | pg.QueryResult[] = await (client ?? pool).query(
        swap(statement.text) as string,
        values,
      );
      // An opening statement (BEGIN; ...) is two statements in one query: pg answers with an array.
      const result = Array.isArray(answer) ? answer[answer.length - 1]! : answer;
      // A row id the database made (INSERT ... RETURNING id) is used by later statements: map it too.
      const returned = (result.rows[0] as { id?: unknown } | undefined)?.id;
      if (statement.returnedId && typeof returned === 'string') add(statement.returnedId, returned);
      if (statement.text === 'COMMIT' && client) {
        client.release();
        client = undefined;
      }
    }
  } catch (error) {
    if (client) {
      await client.query('ROLLBACK').catch(() => {});
      client.release();
    }
    throw error;
  }
}

/** Statements and transactions in a captured unit of work. */
export function describeTemplate(template: readonly Captured[]): {
  statements: number;
  transactions: number;
} {
  return {
    statements: template.filter((s) => !s.text.startsWith('BEGIN') && s.text !== 'COMMIT').length,
    transactions: template.filter((s) => s.text.startsWith('BEGIN')).length,
  };
}
