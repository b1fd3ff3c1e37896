/**
 * Agent keys: how an agent authenticates. A key belongs to one tenant (the tenant never comes from tool
 * arguments), may carry caps per payment and per day, and may name the human it acts for, who then
 * cannot approve its requests.
 */
import { appendAudit } from '../audit/log.js';
import { type Db, isUuid, type Queryable } from '../db/pool.js';
import { RefusedError, UsageError } from '../errors.js';
import { hashSecret, newSecret, secretPrefix } from './credentials.js';
import { confirmStillAllowed, requireAdmin, type User } from './users.js';

export interface AgentKey {
  id: string;
  tenantId: string;
  name: string;
  keyPrefix: string;
  actsForUserId: string | null;
  maxPerPaymentMinor: number | null;
  maxPerDayMinor: number | null;
  capsCurrency: string | null;
  rateLimitPerMinute: number;
  disabled: boolean;
}

export interface AgentKeyRow {
  id: string;
  tenant_id: string;
  name: string;
  key_prefix: string;
  acts_for_user_id: string | null;
  max_per_payment_minor: number | null;
  max_per_day_minor: number | null;
  caps_currency: string | null;
  rate_limit_per_minute: number;
  disabled_at: Date | null;
}

const COLUMNS =
  'id, tenant_id, name, key_prefix, acts_for_user_id, max_per_payment_minor, max_per_day_minor, caps_currency, rate_limit_per_minute, disabled_at';

/**
 * The key's columns as `alias.column`, for a statement of another module that reads the key in the same
 * round trip as its own work (a money-moving call's admission); `toAgentKey` maps the row.
 */
export function agentKeyColumns(alias: string): string {
  return COLUMNS.split(', ')
    .map((column) => `${alias}.${column}`)
    .join(', ');
}

export function toAgentKey(r: AgentKeyRow): AgentKey {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    name: r.name,
    keyPrefix: r.key_prefix,
    actsForUserId: r.acts_for_user_id,
    maxPerPaymentMinor: r.max_per_payment_minor,
    maxPerDayMinor: r.max_per_day_minor,
    capsCurrency: r.caps_currency?.trim() ?? null,
    rateLimitPerMinute: r.rate_limit_per_minute,
    disabled: r.disabled_at !== null,
  };
}

export interface AgentKeyInput {
  name?: string;
  actsForUserId?: string;
  maxPerPaymentMinor?: number;
  maxPerDayMinor?: number;
  capsCurrency?: string;
  rateLimitPerMinute?: number;
}

export async function createAgentKey(
  db: Db,
  tenantId: string,
  admin: User,
  input: AgentKeyInput,
): Promise<{ agentKey: AgentKey; key: string }> {
  // The name is what approvers read on every request ("requested by agent NAME").
  if (input.name !== undefined && (!input.name.trim() || input.name.length > 200))
    throw new UsageError('agent key name (--name) must be 1-200 characters');
  if (admin.role !== 'admin')
    throw new RefusedError('admin_required', `${admin.email} is not an admin`, "use an admin's token");
  const key = newSecret('pgk');
  return db.withTenant(tenantId, async (client) => {
    await confirmStillAllowed(client, admin, ['admin']);
    const { rows } = await client.query<AgentKeyRow>(
      `INSERT INTO agent_keys (tenant_id, name, key_hash, key_prefix, acts_for_user_id, max_per_payment_minor,
                               max_per_day_minor, caps_currency, rate_limit_per_minute)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ${COLUMNS}`,
      [
        tenantId,
        input.name ?? 'agent',
        hashSecret(key),
        secretPrefix(key),
        input.actsForUserId ?? null,
        input.maxPerPaymentMinor ?? null,
        input.maxPerDayMinor ?? null,
        input.capsCurrency ?? null,
        input.rateLimitPerMinute ?? 60,
      ],
    );
    const agentKey = toAgentKey(rows[0]!);
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: admin.email,
      action: 'agent_key.created',
      subjectId: agentKey.id,
      details: {
        name: agentKey.name,
        key_prefix: agentKey.keyPrefix,
        acts_for_user_id: agentKey.actsForUserId,
        max_per_payment_minor: agentKey.maxPerPaymentMinor,
        max_per_day_minor: agentKey.maxPerDayMinor,
        caps_currency: agentKey.capsCurrency,
      },
    });
    return { agentKey, key };
  });
}

/**
 * Revoke an agent key (an admin): from the next request on it authenticates nothing, and a call already
 * running moves no money (its admission reads the key as it is then). What humans approved for it before
 * keeps its approval (a schedule still runs; `paygate schedules cancel` stops one).
 */
export async function disableAgentKey(
  db: Db,
  tenantId: string,
  admin: User,
  keyId: string,
): Promise<AgentKey> {
  requireAdmin(admin, tenantId);
  if (!isUuid(keyId)) throw new RefusedError('agent_key_not_found', `no agent key ${keyId} in this tenant`);
  return db.withTenant(tenantId, async (client) => {
    await confirmStillAllowed(client, admin, ['admin']);
    const { rows: found } = await client.query<{ disabled_at: Date | null }>(
      'SELECT disabled_at FROM agent_keys WHERE id = $1 FOR UPDATE',
      [keyId],
    );
    if (!found[0]) throw new RefusedError('agent_key_not_found', `no agent key ${keyId} in this tenant`);
    if (found[0].disabled_at)
      throw new RefusedError(
        'agent_key_already_disabled',
        `agent key ${keyId} was disabled at ${found[0].disabled_at.toISOString()}`,
      );
    const { rows } = await client.query<AgentKeyRow>(
      `UPDATE agent_keys SET disabled_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
      [keyId],
    );
    const agentKey = toAgentKey(rows[0]!);
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: admin.email,
      action: 'agent_key.disabled',
      subjectId: agentKey.id,
      details: { name: agentKey.name, key_prefix: agentKey.keyPrefix },
    });
    return agentKey;
  });
}

/** An agent key as an admin reviews them: never the key, only its prefix. */
export interface AgentKeyListing extends AgentKey {
  actsForEmail: string | null;
  createdAt: Date;
  disabledAt: Date | null;
  /** The key's last tool call (every tool call is recorded in agent_runs). */
  lastCallAt: Date | null;
}

/** Every agent key of the tenant the transaction is scoped to, disabled ones too, newest first. */
export async function listAgentKeys(client: Queryable): Promise<AgentKeyListing[]> {
  const { rows } = await client.query<
    AgentKeyRow & { acts_for_email: string | null; created_at: Date; last_call_at: Date | null }
  >(
    `SELECT ${agentKeyColumns('k')}, k.created_at, u.email AS acts_for_email,
            (SELECT max(r.created_at) FROM agent_runs r WHERE r.agent_key_id = k.id) AS last_call_at
       FROM agent_keys k LEFT JOIN users u ON u.id = k.acts_for_user_id
      ORDER BY k.created_at DESC, k.id`,
  );
  return rows.map((r) => ({
    ...toAgentKey(r),
    actsForEmail: r.acts_for_email,
    createdAt: r.created_at,
    disabledAt: r.disabled_at,
    lastCallAt: r.last_call_at,
  }));
}

/** The agent key for a presented secret (any tenant), or null. Disabled keys are returned, flagged. */
export async function findAgentKey(db: Db, key: string): Promise<AgentKey | null> {
  // One round trip on every MCP request (migrations/011_agent_key_lookup.sql), outside any tenant.
  const { rows } = await db.pool.query<AgentKeyRow>(`SELECT ${COLUMNS} FROM paygate_agent_key_by_hash($1)`, [
    hashSecret(key),
  ]);
  return rows[0] ? toAgentKey(rows[0]) : null;
}

/** Authenticate an agent: a known, enabled key, or a refusal that says which. */
export async function authenticateAgent(db: Db, key: string | undefined): Promise<AgentKey> {
  if (!key) {
    throw new RefusedError(
      'agent_key_required',
      'no agent key was presented',
      'set PAYGATE_AGENT_KEY (stdio) or send it as a Bearer token (HTTP)',
    );
  }
  const agentKey = await findAgentKey(db, key);
  if (!agentKey)
    throw new RefusedError(
      'invalid_agent_key',
      'the agent key is not valid',
      'ask an admin for a key: `paygate agent-key create`',
    );
  if (agentKey.disabled)
    throw new RefusedError(
      'agent_key_disabled',
      'this agent key has been disabled',
      'ask an admin for a new key',
    );
  return agentKey;
}
