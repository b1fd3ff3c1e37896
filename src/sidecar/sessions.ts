/**
 * Approval-page sessions. Logging in with a personal access token creates a session whose random
 * secret lives only in the browser's httpOnly cookie; the database keeps its SHA-256 (migration 004).
 * Every request re-reads the user, so a disabled user or a changed role takes effect at once.
 *
 * CSRF: a synchronizer token per session, derived as HMAC-SHA256(session secret, "csrf"). It needs no
 * storage, changes with every session, and cannot be computed without the cookie, which a cross-site
 * page cannot read (and, with SameSite=Strict, the browser does not even send).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { appendAudit } from '../audit/log.js';
import type { Db } from '../db/pool.js';
import { hashSecret } from '../directory/credentials.js';
import { getUser, type User } from '../directory/users.js';

/** A working day: long enough to approve a morning's requests, short enough that a lost laptop ages out. */
export const SESSION_MAX_AGE_MS = 12 * 60 * 60 * 1000;
/** An unattended page logs itself out after an hour without requests. */
export const SESSION_IDLE_MS = 60 * 60 * 1000;

export interface Session {
  id: string;
  tenantId: string;
  user: User;
  /** The cookie's value; the CSRF token is derived from it. */
  secret: string;
}

export async function createSession(db: Db, user: User, meta: { ip?: string }): Promise<Session> {
  const secret = randomBytes(32).toString('base64url');
  const id = await db.withTenant(user.tenantId, async (client) => {
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO sidecar_sessions (tenant_id, user_id, secret_hash, expires_at)
       VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING id`,
      [user.tenantId, user.id, hashSecret(secret), SESSION_MAX_AGE_MS / 1000],
    );
    await appendAudit(client, {
      tenantId: user.tenantId,
      actorType: 'user',
      actorId: user.email,
      action: 'session.login',
      subjectId: rows[0]!.id,
      details: { channel: 'approval_page', ip: meta.ip ?? null },
    });
    return rows[0]!.id;
  });
  return { id, tenantId: user.tenantId, user, secret };
}

/** The live session for a cookie value, or null (unknown, ended, expired, idle too long, user disabled). */
export async function findSession(db: Db, secret: string | undefined): Promise<Session | null> {
  if (!secret || !/^[A-Za-z0-9_-]{43}$/.test(secret)) return null;
  // The tenant is what we are looking up, so this one read crosses tenants; it matches on a hash only.
  const { rows } = await db.withSystem((client) =>
    client.query<{ id: string; tenant_id: string; user_id: string }>(
      `UPDATE sidecar_sessions SET last_seen_at = now()
       WHERE secret_hash = $1 AND ended_at IS NULL AND expires_at > now()
         AND last_seen_at > now() - make_interval(secs => $2)
       RETURNING id, tenant_id, user_id`,
      [hashSecret(secret), SESSION_IDLE_MS / 1000],
    ),
  );
  const row = rows[0];
  if (!row) return null;
  const user = await db.withTenant(row.tenant_id, async (client) => {
    const found = await getUser(client, row.user_id);
    const { rows: live } = await client.query<{ disabled: boolean }>(
      'SELECT disabled_at IS NOT NULL AS disabled FROM users WHERE id = $1',
      [row.user_id],
    );
    return found && !live[0]?.disabled ? found : null;
  });
  return user ? { id: row.id, tenantId: row.tenant_id, user, secret } : null;
}

export async function endSession(db: Db, session: Session): Promise<void> {
  await db.withTenant(session.tenantId, async (client) => {
    await client.query('UPDATE sidecar_sessions SET ended_at = now() WHERE id = $1 AND ended_at IS NULL', [
      session.id,
    ]);
    await appendAudit(client, {
      tenantId: session.tenantId,
      actorType: 'user',
      actorId: session.user.email,
      action: 'session.logout',
      subjectId: session.id,
    });
  });
}

/** The synchronizer token for forms of this session (or of a pre-login cookie). */
export function csrfTokenFor(secret: string): string {
  return createHmac('sha256', secret).update('paygate-csrf').digest('base64url');
}

export function csrfTokenValid(secret: string | undefined, presented: unknown): boolean {
  if (!secret || typeof presented !== 'string') return false;
  const expected = Buffer.from(csrfTokenFor(secret));
  const given = Buffer.from(presented);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
