/**
 * A tenant's ACH settings (tenants.ach_settings): what the ODFI told the originator (routing numbers,
 * names, company identification, balanced or not), and the workflow's own (cutoff, settlement window).
 *
 * The stored JSON is the file layer's `nachaSettingsSchema` plus the workflow fields below, with one
 * difference: the offset account number (the originator's own account at the ODFI, for balanced files)
 * is a bank account number, so it is stored sealed like vendors' (AES-256-GCM, src/directory/encryption.ts)
 * and shown as last4. `nachaSettingsFor` opens it only to write a file.
 */
import { z } from 'zod';
import { appendAudit } from '../audit/log.js';
import type { Db, Queryable } from '../db/pool.js';
import type { Sealer } from '../directory/encryption.js';
import { confirmStillAllowed, requireAdmin, type User } from '../directory/users.js';
import { RefusedError, UsageError } from '../errors.js';
import { type NachaSettings, nachaSettingsSchema } from '../gateways/nacha/writer.js';
import { addBusinessDays, isBusinessDay, nextBusinessDay } from '../payments/calendar.js';

const sealedAccountSchema = z.object({
  accountNumberSealed: z.string().min(1),
  last4: z.string().regex(/^[0-9A-Za-z]{1,4}$/),
  accountType: z.enum(['checking', 'savings']),
  name: z.string().max(22).optional(),
});

/** The workflow's fields, beside the file layer's. */
export const achWorkflowSchema = z.object({
  /** How the originator appears in batch headers and on the vendor's statement. */
  companyName: z.string().trim().min(1).max(16),
  /** The company identification the ODFI assigned (often "1" + EIN). */
  companyId: z.string().trim().min(1).max(10),
  entryDescription: z.string().trim().min(1).max(10).default('VENDOR PAY'),
  /** The ODFI's cutoff for next-day settlement, HH:MM in the tenant's time zone. */
  cutoff: z
    .string()
    .regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'cutoff must be HH:MM (24-hour)')
    .default('16:00'),
  /** Banking days after the effective date during which a return is still expected. */
  settlementDays: z.number().int().min(0).max(10).default(2),
});

/** As stored in tenants.ach_settings. */
export const storedAchSettingsSchema = achWorkflowSchema.extend({
  immediateDestination: z.string(),
  immediateDestinationName: z.string(),
  immediateOrigin: z.string(),
  immediateOriginName: z.string(),
  odfiRouting: z.string(),
  balanced: z.boolean(),
  offsetAccount: sealedAccountSchema.optional(),
  referenceCode: z.string().max(8).optional(),
});
export type StoredAchSettings = z.infer<typeof storedAchSettingsSchema>;

/** What an admin sets: every field, the offset account number in the clear (sealed before storing). */
export interface AchSettingsInput {
  immediateDestination?: string;
  immediateDestinationName?: string;
  immediateOrigin?: string;
  immediateOriginName?: string;
  odfiRouting?: string;
  companyName?: string;
  companyId?: string;
  entryDescription?: string;
  balanced?: boolean;
  offsetAccountNumber?: string;
  offsetAccountType?: 'checking' | 'savings';
  offsetAccountName?: string;
  referenceCode?: string;
  cutoff?: string;
  settlementDays?: number;
}

/** Settings fields by the `paygate ach settings` flag that sets them, so a refusal names what to type. */
const FLAG_OF: Record<string, string> = {
  balanced: '--balanced or --unbalanced',
  'offsetAccount.accountType': '--offset-account-type',
  'offsetAccount.name': '--offset-account-name',
};

/** The NACHA writer's names for the company fields of a batch header, as settings fields. */
const COMPANY_FIELD: Record<string, string> = {
  'company.name': 'companyName',
  'company.identification': 'companyId',
  'company.entryDescription': 'entryDescription',
};

/**
 * The `paygate ach settings` flag that sets a settings field, or a field of the NACHA writer's that comes
 * from the settings (the export names it when the writer refuses the file); undefined for anything else.
 */
export function settingsFlag(field: string): string | undefined {
  if (FLAG_OF[field]) return FLAG_OF[field];
  // The account itself, sealed or opened, and its last4 are all set by --offset-account.
  if (field.startsWith('offsetAccount')) return '--offset-account';
  const key = COMPANY_FIELD[field] ?? field;
  return key in storedAchSettingsSchema.shape
    ? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
    : undefined;
}

function issuesText(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      if (issue.path.length === 0) return `settings: ${issue.message}`;
      const field = issue.path.join('.');
      const flag = settingsFlag(field) ?? `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      return issue.code === 'invalid_type' && /received undefined/.test(issue.message)
        ? `${flag} is missing`
        : `${flag}: ${issue.message}`;
    })
    .join('; ');
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * The tenant-level text every file and batch header carries, by the flag that sets it. Refused at
 * `ach settings` rather than written: names of vendors are transliterated per entry, but a tenant's own
 * name is the admin's to spell, and one the writer cannot write would stop every export.
 */
function nonAsciiFlags(stored: StoredAchSettings): string[] {
  const text: [string, string | undefined][] = [
    ['--company-name', stored.companyName],
    ['--entry-description', stored.entryDescription],
    ['--immediate-destination-name', stored.immediateDestinationName],
    ['--immediate-origin-name', stored.immediateOriginName],
    ['--reference-code', stored.referenceCode],
    ['--offset-account-name', stored.offsetAccount?.name],
  ];
  return text
    .filter(([, value]) => value !== undefined && !PRINTABLE_ASCII.test(value))
    .map(([flag]) => flag);
}

export async function readStoredAchSettings(
  client: Queryable,
  tenantId: string,
): Promise<{ raw: Record<string, unknown>; timezone: string }> {
  const { rows } = await client.query<{ ach_settings: Record<string, unknown>; timezone: string }>(
    'SELECT ach_settings, timezone FROM tenants WHERE id = $1',
    [tenantId],
  );
  if (!rows[0]) throw new RefusedError('tenant_not_found', `tenant ${tenantId} not found`);
  return { raw: rows[0].ach_settings ?? {}, timezone: rows[0].timezone };
}

/** The tenant's settings, validated; refused (not a crash) when an admin has not set them up yet. */
export function parseStoredAchSettings(raw: Record<string, unknown>): StoredAchSettings {
  const parsed = storedAchSettingsSchema.safeParse(raw);
  if (!parsed.success) {
    throw new RefusedError(
      'ach_not_configured',
      `the tenant's ACH settings are missing or incomplete (${issuesText(parsed.error)})`,
      'an admin sets them with paygate ach settings --tenant SLUG ...',
    );
  }
  return parsed.data;
}

/** The file layer's settings, with the offset account opened: only for writing a file. */
export function nachaSettingsFor(stored: StoredAchSettings, sealer: Sealer): NachaSettings {
  const { offsetAccount, ...rest } = stored;
  return nachaSettingsSchema.parse({
    immediateDestination: rest.immediateDestination,
    immediateDestinationName: rest.immediateDestinationName,
    immediateOrigin: rest.immediateOrigin,
    immediateOriginName: rest.immediateOriginName,
    odfiRouting: rest.odfiRouting,
    balanced: rest.balanced,
    referenceCode: rest.referenceCode,
    offsetAccount: offsetAccount
      ? {
          accountNumber: sealer.open(Buffer.from(offsetAccount.accountNumberSealed, 'base64')),
          accountType: offsetAccount.accountType,
          name: offsetAccount.name,
        }
      : undefined,
  });
}

/** The settings as a human may see them: the offset account as last4 only. */
export function achSettingsJson(stored: StoredAchSettings) {
  return {
    immediate_destination: stored.immediateDestination,
    immediate_destination_name: stored.immediateDestinationName,
    immediate_origin: stored.immediateOrigin,
    immediate_origin_name: stored.immediateOriginName,
    odfi_routing: stored.odfiRouting,
    company_name: stored.companyName,
    company_id: stored.companyId,
    entry_description: stored.entryDescription,
    balanced: stored.balanced,
    offset_account_last4: stored.offsetAccount?.last4 ?? null,
    offset_account_type: stored.offsetAccount?.accountType ?? null,
    reference_code: stored.referenceCode ?? null,
    cutoff: stored.cutoff,
    settlement_days: stored.settlementDays,
  };
}

/**
 * Set (or change some of) a tenant's ACH settings; admin only. The result is validated as a whole with
 * the file layer's schema (check digits, balanced needs an offset account) before it is stored.
 */
export async function setAchSettings(
  db: Db,
  tenantId: string,
  admin: User,
  sealer: Sealer,
  input: AchSettingsInput,
): Promise<StoredAchSettings> {
  requireAdmin(admin, tenantId);
  // tenants is read-only to the application role: the update runs as the connecting user, scoped by id.
  return db.withSystem(async (client) => {
    await confirmStillAllowed(client, admin, ['admin']);
    const { rows } = await client.query<{ ach_settings: Record<string, unknown> }>(
      'SELECT ach_settings FROM tenants WHERE id = $1 FOR UPDATE',
      [tenantId],
    );
    if (!rows[0]) throw new RefusedError('tenant_not_found', `tenant ${tenantId} not found`);
    const current = rows[0].ach_settings ?? {};
    const defined = Object.fromEntries(
      Object.entries({
        immediateDestination: input.immediateDestination,
        immediateDestinationName: input.immediateDestinationName,
        immediateOrigin: input.immediateOrigin,
        immediateOriginName: input.immediateOriginName,
        odfiRouting: input.odfiRouting,
        companyName: input.companyName,
        companyId: input.companyId,
        entryDescription: input.entryDescription,
        balanced: input.balanced,
        referenceCode: input.referenceCode,
        cutoff: input.cutoff,
        settlementDays: input.settlementDays,
      }).filter(([, v]) => v !== undefined),
    );
    const merged: Record<string, unknown> = { ...current, ...defined };
    const currentOffset = sealedAccountSchema.safeParse(current.offsetAccount);
    if (input.offsetAccountNumber !== undefined) {
      if (!/^[0-9]{4,17}$/.test(input.offsetAccountNumber))
        throw new UsageError('the offset account number must be 4 to 17 digits');
      merged.offsetAccount = {
        accountNumberSealed: sealer.seal(input.offsetAccountNumber).toString('base64'),
        last4: input.offsetAccountNumber.slice(-4),
        accountType: input.offsetAccountType ?? 'checking',
        ...(input.offsetAccountName ? { name: input.offsetAccountName } : {}),
      };
    } else if (currentOffset.success && (input.offsetAccountType || input.offsetAccountName)) {
      merged.offsetAccount = {
        ...currentOffset.data,
        ...(input.offsetAccountType ? { accountType: input.offsetAccountType } : {}),
        ...(input.offsetAccountName ? { name: input.offsetAccountName } : {}),
      };
    } else if (input.offsetAccountType || input.offsetAccountName) {
      throw new UsageError('--offset-account-type and --offset-account-name need --offset-account');
    }
    const workflow = storedAchSettingsSchema.safeParse(merged);
    if (!workflow.success) throw new UsageError(`ACH settings: ${issuesText(workflow.error)}`);
    const stored = workflow.data;
    const notAscii = nonAsciiFlags(stored);
    if (notAscii.length > 0)
      throw new UsageError(
        `ACH settings: ${notAscii.map((flag) => `${flag} must be printable ASCII (NACHA files carry no accents or other non-ASCII characters)`).join('; ')}`,
      );
    // The file layer's own rules (check digits, widths, balanced => offset account), on the opened form.
    const file = nachaSettingsSchema.safeParse({
      ...stored,
      offsetAccount: stored.offsetAccount
        ? {
            accountNumber: '0000',
            accountType: stored.offsetAccount.accountType,
            name: stored.offsetAccount.name,
          }
        : undefined,
    });
    if (!file.success) throw new UsageError(`ACH settings: ${issuesText(file.error)}`);
    await client.query('UPDATE tenants SET ach_settings = $2 WHERE id = $1', [
      tenantId,
      JSON.stringify(stored),
    ]);
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: admin.email,
      action: 'ach.settings_changed',
      subjectId: tenantId,
      details: { settings: achSettingsJson(stored), changed: Object.keys(defined).sort() },
    });
    return stored;
  });
}

/** Local date (YYYY-MM-DD) and minutes since midnight in a time zone. */
export function localClock(timeZone: string, now: Date): { date: string; minutes: number } {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(now);
  const get = (type: string) => parts.find((p) => p.type === type)!.value;
  return {
    date: `${get('year')}-${get('month')}-${get('day')}`,
    minutes: Number(get('hour')) * 60 + Number(get('minute')),
  };
}

/**
 * When a file exported at `now` settles. Before the cutoff on a banking day the ODFI sends it today and
 * it settles the next banking day (standard next-day ACH); after the cutoff, on a weekend or on a
 * Federal Reserve holiday, it goes with the next banking day's window. The return window then runs
 * `settlementDays` banking days past the effective date, so a holiday in it does not end it early.
 */
export function fileDates(
  settings: Pick<StoredAchSettings, 'cutoff' | 'settlementDays'>,
  timeZone: string,
  now: Date,
): { submissionDate: string; effectiveDate: string; returnWindowEnds: string } {
  const local = localClock(timeZone, now);
  const [h, m] = settings.cutoff.split(':').map(Number) as [number, number];
  const beforeCutoff = local.minutes < h * 60 + m;
  const submissionDate = isBusinessDay(local.date) && beforeCutoff ? local.date : nextBusinessDay(local.date);
  const effectiveDate = nextBusinessDay(submissionDate);
  return {
    submissionDate,
    effectiveDate,
    returnWindowEnds: addBusinessDays(effectiveDate, settings.settlementDays),
  };
}
