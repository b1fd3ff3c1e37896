/**
 * Humans: viewers, approvers and admins of one tenant, each holding a personal access token that the
 * database keeps only as a hash. The token is how a human proves who they are on every channel (CLI,
 * approval page); an email address alone proves nothing.
 */
import { appendAudit } from '../audit/log.js';
import type { Db, Queryable } from '../db/pool.js';
import { PgError, pgErrorCode } from '../db/pool.js';
import { RefusedError, UsageError } from '../errors.js';
import { hashSecret, newSecret } from './credentials.js';

export type Role = 'viewer' | 'approver' | 'admin';
export const ROLES: readonly Role[] = ['viewer', 'approver', 'admin'];

export interface User {
  id: string;
  tenantId: string;
  email: string;
  role: Role;
  approvalLimitMinor: number | null;
  approvalLimitCurrency: string | null;
}

const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

export function checkEmail(email: string): string {
  if (!EMAIL.test(email)) throw new UsageError(`"${email}" is not an email address`);
  return email.toLowerCase();
}

export function checkRole(role: string): Role {
  if (!(ROLES as readonly string[]).includes(role)) {
    throw new UsageError(`role "${role}" is not one of ${ROLES.join(', ')}`);
  }
  return role as Role;
}

interface UserRow {
  id: string;
  tenant_id: string;
  email: string;
  role: Role;
  approval_limit_minor: number | null;
  approval_limit_currency: string | null;
}

const USER_COLUMNS = 'id, tenant_id, email, role, approval_limit_minor, approval_limit_currency';

function toUser(r: UserRow): User {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    email: r.email,
    role: r.role,
    approvalLimitMinor: r.approval_limit_minor,
    approvalLimitCurrency: r.approval_limit_currency?.trim() ?? null,
  };
}

export async function countAdmins(client: Queryable): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM users WHERE role = 'admin' AND disabled_at IS NULL",
  );
  return rows[0]!.n;
}

/**
 * Add a human. `actor` is the admin doing it; null is allowed only for the first admin of a tenant that
 * has none (checked here, in the same transaction, so two racing "first admins" cannot both win).
 */
export async function addUser(
  db: Db,
  tenantId: string,
  actor: User | null,
  input: { email: string; role: Role; limit?: { amountMinor: number; currency: string } },
): Promise<{ user: User; token: string }> {
  const email = checkEmail(input.email);
  const token = newSecret('pgu');
  try {
    return await db.withTenant(tenantId, async (client) => {
      if (!actor) {
        // Serialize bootstrap per tenant: without this two first admins could be added at once.
        await client.query("SELECT pg_advisory_xact_lock(hashtext('first-admin:' || $1))", [tenantId]);
        if ((await countAdmins(client)) > 0) {
          throw new RefusedError(
            'admin_token_required',
            "this tenant already has an admin: adding users needs an admin's personal access token",
            "set PAYGATE_USER_TOKEN to an admin's token (or run on a terminal to be prompted)",
          );
        }
        if (input.role !== 'admin') {
          throw new RefusedError(
            'first_user_must_be_admin',
            'the first user of a tenant must be an admin',
            'add them with --role admin',
          );
        }
      } else {
        requireAdmin(actor, tenantId);
        await confirmStillAllowed(client, actor, ['admin']);
      }
      const { rows } = await client.query<UserRow>(
        `INSERT INTO users (tenant_id, email, role, approval_limit_minor, approval_limit_currency, token_hash)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${USER_COLUMNS}`,
        [
          tenantId,
          email,
          input.role,
          input.limit?.amountMinor ?? null,
          input.limit?.currency ?? null,
          hashSecret(token),
        ],
      );
      const user = toUser(rows[0]!);
      await appendAudit(client, {
        tenantId,
        actorType: actor ? 'user' : 'cli',
        actorId: actor?.email ?? 'bootstrap',
        action: 'user.added',
        subjectId: user.id,
        details: { email, role: input.role, limit: input.limit ?? null },
      });
      return { user, token };
    });
  } catch (error) {
    if (pgErrorCode(error) === PgError.uniqueViolation) {
      throw new RefusedError('user_exists', `${email} is already a user of this tenant`);
    }
    throw error;
  }
}

/**
 * For the changes admins make to humans' access (disabling, a role, a limit): the tenant's admins take
 * turns (one lock), the admin is read as they are once their turn comes (one disabled or demoted while
 * waiting, by the admin whose turn came first, changes nobody), and the human to change is locked.
 */
async function adminsTurn(
  client: Queryable,
  tenantId: string,
  actor: User,
  email: string,
): Promise<{ user: User; disabled: boolean }> {
  await client.query("SELECT pg_advisory_xact_lock(hashtext('admins:' || $1))", [tenantId]);
  await confirmStillAllowed(client, actor, ['admin']);
  const { rows: found } = await client.query<UserRow & { disabled: boolean }>(
    `SELECT ${USER_COLUMNS}, disabled_at IS NOT NULL AS disabled FROM users WHERE lower(email) = lower($1) FOR UPDATE`,
    [email],
  );
  if (!found[0]) throw new RefusedError('user_not_found', `no user ${email} in this tenant`);
  return { user: toUser(found[0]), disabled: found[0].disabled };
}

/**
 * Revoke a human (an admin): their personal access token stops working at once (CLI and approval page,
 * whose session re-reads the user on every request), and approvals they gave that have not moved money
 * yet lapse (src/approvals/approvals.ts). The tenant's last admin cannot be disabled, by anyone: the
 * tenant would have nobody left to manage it. Admins disabling each other at once take turns.
 */
export async function disableUser(db: Db, tenantId: string, actor: User, email: string): Promise<User> {
  requireAdmin(actor, tenantId);
  return db.withTenant(tenantId, async (client) => {
    const found = await adminsTurn(client, tenantId, actor, email);
    if (found.disabled) throw new RefusedError('user_already_disabled', `${email} is already disabled`);
    const { user } = found;
    if (user.role === 'admin' && (await countAdmins(client)) <= 1)
      throw new RefusedError(
        'last_admin',
        `${user.email} is the tenant's last admin`,
        'add another admin first (paygate user add --role admin)',
      );
    await client.query('UPDATE users SET disabled_at = now() WHERE id = $1', [user.id]);
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: actor.email,
      action: 'user.disabled',
      subjectId: user.id,
      details: { email: user.email, role: user.role },
    });
    return user;
  });
}

/** A user as an admin reviews who has access: when they were added and whether they were disabled. */
export interface UserListing extends User {
  createdAt: Date;
  disabledAt: Date | null;
}

/** Every human of the tenant the transaction is scoped to, disabled ones too, by email. */
export async function listUsers(client: Queryable): Promise<UserListing[]> {
  const { rows } = await client.query<UserRow & { created_at: Date; disabled_at: Date | null }>(
    `SELECT ${USER_COLUMNS}, created_at, disabled_at FROM users ORDER BY lower(email)`,
  );
  return rows.map((r) => ({ ...toUser(r), createdAt: r.created_at, disabledAt: r.disabled_at }));
}

export interface AccessChange {
  role?: Role;
  /** A new approval limit; null removes it (no limit). Absent: unchanged. */
  limit?: { amountMinor: number; currency: string } | null;
}

/**
 * Change a human's role or approval limit (an admin). Takes effect at once: approvals they gave that have
 * not moved money yet are judged by their new rights when they are used (src/approvals/approvals.ts), so
 * a demotion or a lower limit takes back what they may no longer approve. The tenant's last admin cannot
 * be demoted; changes to admins take turns with disabling them, on the same lock.
 */
export async function changeUserAccess(
  db: Db,
  tenantId: string,
  actor: User,
  email: string,
  change: AccessChange,
): Promise<{ before: User; after: User }> {
  if (change.role === undefined && change.limit === undefined)
    throw new UsageError('nothing to change: give --role, --limit with --currency, or --remove-limit');
  requireAdmin(actor, tenantId);
  return db.withTenant(tenantId, async (client) => {
    const { user: before, disabled } = await adminsTurn(client, tenantId, actor, email);
    if (disabled)
      throw new RefusedError(
        'user_disabled',
        `${before.email} is disabled`,
        'add them again under another email, or keep them disabled',
      );
    const role = change.role ?? before.role;
    if (before.role === 'admin' && role !== 'admin' && (await countAdmins(client)) <= 1)
      throw new RefusedError(
        'last_admin',
        `${before.email} is the tenant's last admin`,
        'add another admin first (paygate user add --role admin)',
      );
    const limit =
      change.limit === undefined
        ? before.approvalLimitMinor === null
          ? null
          : { amountMinor: before.approvalLimitMinor, currency: before.approvalLimitCurrency! }
        : change.limit;
    // Asked for what already holds: nothing to change, nothing to put on the record.
    if (
      role === before.role &&
      (limit?.amountMinor ?? null) === before.approvalLimitMinor &&
      (limit?.currency ?? null) === before.approvalLimitCurrency
    )
      return { before, after: before };
    const { rows } = await client.query<UserRow>(
      `UPDATE users SET role = $2, approval_limit_minor = $3, approval_limit_currency = $4
       WHERE id = $1 RETURNING ${USER_COLUMNS}`,
      [before.id, role, limit?.amountMinor ?? null, limit?.currency ?? null],
    );
    const after = toUser(rows[0]!);
    const access = (u: User) => ({
      role: u.role,
      limit:
        u.approvalLimitMinor === null
          ? null
          : { amountMinor: u.approvalLimitMinor, currency: u.approvalLimitCurrency },
    });
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: actor.email,
      action: 'user.access_changed',
      subjectId: after.id,
      details: { email: after.email, before: access(before), after: access(after) },
    });
    return { before, after };
  });
}

/** The check before an admin's act, on the human as their token showed them (an admin of this tenant). */
export function requireAdmin(user: User, tenantId: string): void {
  if (user.tenantId !== tenantId || user.role !== 'admin') {
    throw new RefusedError(
      'admin_required',
      `${user.email} is not an admin of this tenant`,
      "use an admin's token",
    );
  }
}

/**
 * First thing in a transaction that acts on a human's authority: the human as they are now (role and
 * limit), their row locked FOR SHARE. Their token was checked before this transaction; one disabled
 * since then acts no more, and a change of their rights that comes while this transaction runs waits
 * for it, so a change of rights and an act under them are ordered, never interleaved.
 */
export async function currentUser(client: Queryable, actor: User): Promise<User> {
  const { rows } = await client.query<UserRow & { disabled: boolean }>(
    `SELECT ${USER_COLUMNS}, disabled_at IS NOT NULL AS disabled FROM users WHERE id = $1 FOR SHARE`,
    [actor.id],
  );
  const now = rows[0];
  if (!now || now.disabled)
    throw new RefusedError('user_disabled', `${actor.email} has been disabled`, 'ask an admin');
  return toUser(now);
}

/** currentUser, refused unless they still hold one of `roles`. */
export async function confirmStillAllowed(
  client: Queryable,
  actor: User,
  roles: readonly Role[],
): Promise<User> {
  const now = await currentUser(client, actor);
  if (!roles.includes(now.role)) {
    const approverWill = roles.includes('approver');
    throw new RefusedError(
      approverWill ? 'approver_required' : 'admin_required',
      `${actor.email} is now a ${now.role}; this needs ${approverWill ? 'an approver or an admin' : 'an admin'}`,
      approverWill ? undefined : "use an admin's token",
    );
  }
  return now;
}

/** The human holding `token` in `tenantId`, or a refusal that does not say whether the token exists. */
export async function authenticateUser(db: Db, tenantId: string, token: string): Promise<User> {
  const { rows } = await db.withTenant(tenantId, (client) =>
    client.query<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE token_hash = $1 AND disabled_at IS NULL`, [
      hashSecret(token),
    ]),
  );
  if (!rows[0]) {
    throw new RefusedError(
      'invalid_user_token',
      'that personal access token is not valid for this tenant',
      'use your own token',
    );
  }
  return toUser(rows[0]);
}

/** Find a human by token across tenants (the approval page's login, which has no tenant yet). */
export async function findUserByToken(db: Db, token: string): Promise<User | null> {
  const { rows } = await db.withSystem((client) =>
    client.query<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE token_hash = $1 AND disabled_at IS NULL`, [
      hashSecret(token),
    ]),
  );
  return rows[0] ? toUser(rows[0]) : null;
}

export async function findUserByEmail(client: Queryable, email: string): Promise<User | null> {
  const { rows } = await client.query<UserRow>(
    `SELECT ${USER_COLUMNS} FROM users WHERE lower(email) = lower($1) AND disabled_at IS NULL`,
    [email],
  );
  return rows[0] ? toUser(rows[0]) : null;
}

export async function getUser(client: Queryable, userId: string): Promise<User | null> {
  const { rows } = await client.query<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE id = $1`, [userId]);
  return rows[0] ? toUser(rows[0]) : null;
}
