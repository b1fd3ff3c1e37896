/** Tenants: the unit of isolation. Creating one is a system action; everything else is tenant-scoped. */

import { appendAudit } from '../audit/log.js';
import type { Db, Queryable } from '../db/pool.js';
import { PgError, pgErrorCode } from '../db/pool.js';
import { RefusedError, UsageError } from '../errors.js';

export interface Tenant {
  id: string;
  slug: string;
  name: string;
  timezone: string;
  dualApprovalThresholdMinor: number | null;
  dualApprovalCurrency: string | null;
  maxInsufficientFundsReschedules: number;
  allowEmailInAnalysis: boolean;
}

const SLUG = /^[a-z0-9][a-z0-9-]{1,62}$/;

export function checkSlug(slug: string): string {
  if (!SLUG.test(slug)) {
    throw new UsageError(
      `tenant slug "${slug}" is not valid: use 2-63 lower-case letters, digits and dashes, e.g. "acme"`,
    );
  }
  return slug;
}

export function checkTimezone(timezone: string): string {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
  } catch {
    throw new UsageError(
      `time zone "${timezone}" is not an IANA time zone: use e.g. "UTC" or "America/New_York"`,
    );
  }
  return timezone;
}

const COLUMNS = [
  'id',
  'slug',
  'name',
  'timezone',
  'dual_approval_threshold_minor',
  'dual_approval_currency',
  'max_insufficient_funds_reschedules',
  'allow_email_in_analysis',
] as const;

const SELECT_TENANT = `SELECT ${COLUMNS.join(', ')} FROM tenants`;

/**
 * The tenant's columns as `alias.column AS tenant_column`, for a statement of another module that reads
 * the tenant beside its own row in the same round trip (a money-moving call's admission);
 * `toPrefixedTenant` maps them.
 */
export function prefixedTenantColumns(alias: string): string {
  return COLUMNS.map((column) => `${alias}.${column} AS tenant_${column}`).join(', ');
}

export function toPrefixedTenant(row: Record<string, unknown>): Tenant {
  return toTenant(
    Object.fromEntries(COLUMNS.map((column) => [column, row[`tenant_${column}`]])) as unknown as TenantRow,
  );
}

interface TenantRow {
  id: string;
  slug: string;
  name: string;
  timezone: string;
  dual_approval_threshold_minor: number | null;
  dual_approval_currency: string | null;
  max_insufficient_funds_reschedules: number;
  allow_email_in_analysis: boolean;
}

function toTenant(r: TenantRow): Tenant {
  return {
    id: r.id,
    slug: r.slug,
    name: r.name,
    timezone: r.timezone,
    dualApprovalThresholdMinor: r.dual_approval_threshold_minor,
    dualApprovalCurrency: r.dual_approval_currency?.trim() ?? null,
    maxInsufficientFundsReschedules: r.max_insufficient_funds_reschedules,
    allowEmailInAnalysis: r.allow_email_in_analysis,
  };
}

export async function createTenant(
  db: Db,
  input: {
    slug: string;
    name?: string;
    timezone?: string;
    dualApproval?: { thresholdMinor: number; currency: string };
  },
): Promise<Tenant> {
  const slug = checkSlug(input.slug);
  const timezone = checkTimezone(input.timezone ?? 'UTC');
  // The column's own check would otherwise surface as a database error (exit 1) rather than bad usage.
  if (input.name !== undefined && (!input.name.trim() || input.name.length > 200))
    throw new UsageError('tenant name (--name) must be 1-200 characters');
  try {
    return await db.withSystem(async (client) => {
      const { rows } = await client.query<TenantRow>(
        `INSERT INTO tenants (slug, name, timezone, dual_approval_threshold_minor, dual_approval_currency)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, slug, name, timezone, dual_approval_threshold_minor, dual_approval_currency,
                   max_insufficient_funds_reschedules, allow_email_in_analysis`,
        [
          slug,
          input.name ?? slug,
          timezone,
          input.dualApproval?.thresholdMinor ?? null,
          input.dualApproval?.currency ?? null,
        ],
      );
      const tenant = toTenant(rows[0]!);
      await appendAudit(client, {
        tenantId: tenant.id,
        actorType: 'cli',
        action: 'tenant.created',
        subjectId: tenant.id,
        details: { slug, timezone, dual_approval: input.dualApproval ?? null },
      });
      return tenant;
    });
  } catch (error) {
    if (pgErrorCode(error) === PgError.uniqueViolation) {
      throw new RefusedError('tenant_exists', `tenant "${slug}" already exists`, 'pick another slug');
    }
    throw error;
  }
}

/** Resolve a slug to the tenant (a system lookup: tenants are only visible to themselves). */
export async function findTenantBySlug(db: Db, slug: string): Promise<Tenant> {
  const { rows } = await db.withSystem((client) =>
    client.query<TenantRow>(`${SELECT_TENANT} WHERE slug = $1`, [slug]),
  );
  if (!rows[0]) {
    throw new RefusedError(
      'tenant_not_found',
      `no tenant "${slug}"`,
      'create it with `paygate tenant create SLUG`',
    );
  }
  return toTenant(rows[0]);
}

export function getTenant(db: Db, tenantId: string): Promise<Tenant> {
  return db.withTenant(tenantId, (client) => readTenant(client, tenantId));
}

/** getTenant inside the caller's tenant transaction. */
export async function readTenant(client: Queryable, tenantId: string): Promise<Tenant> {
  const { rows } = await client.query<TenantRow>(`${SELECT_TENANT} WHERE id = $1`, [tenantId]);
  if (!rows[0]) throw new RefusedError('tenant_not_found', `no tenant ${tenantId}`);
  return toTenant(rows[0]);
}
