/**
 * The NACHA files we originated: listing them, and writing one to disk from its stored (sealed) text.
 * The write is atomic (a temporary file in the same folder, fsync, rename, fsync of the folder), so the
 * folder the bank's transfer job reads never holds half a file; writing the same file again produces
 * the same bytes (checked against the hash recorded at export).
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { appendAudit } from '../audit/log.js';
import type { Queryable } from '../db/pool.js';
import { confirmStillAllowed, requireAdmin, type User } from '../directory/users.js';
import { RefusedError } from '../errors.js';
import { formatAmount } from '../money.js';
import type { AchDeps } from './deps.js';
import { fileDates, parseStoredAchSettings, readStoredAchSettings } from './settings.js';

interface FileRow {
  id: string;
  created_at: Date;
  created_by: string;
  file_id_modifier: string;
  effective_date: string | Date;
  return_window_ends: string | Date;
  content_sha256: Buffer;
  entry_count: number;
  batch_count: number;
  total_credit_minor: number;
  total_debit_minor: number;
  written_path: string | null;
  written_at: Date | null;
}

function isoDate(d: string | Date): string {
  // pg returns `date` as a local-midnight Date; format it back without a time-zone shift.
  if (typeof d === 'string') return d.slice(0, 10);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

export interface AchFileView {
  ach_file_id: string;
  created_at: string;
  created_by: string;
  file_id_modifier: string;
  effective_date: string;
  return_window_ends: string;
  content_sha256: string;
  entry_count: number;
  batch_count: number;
  total_credit: string;
  total_credit_minor: number;
  total_debit: string;
  total_debit_minor: number;
  currency: 'USD';
  written_path: string | null;
  written_at: string | null;
}

export function achFileView(r: FileRow): AchFileView {
  return {
    ach_file_id: r.id,
    created_at: r.created_at.toISOString(),
    created_by: r.created_by,
    file_id_modifier: r.file_id_modifier,
    effective_date: isoDate(r.effective_date),
    return_window_ends: isoDate(r.return_window_ends),
    content_sha256: r.content_sha256.toString('hex'),
    entry_count: r.entry_count,
    batch_count: r.batch_count,
    total_credit: formatAmount(r.total_credit_minor, 'USD'),
    total_credit_minor: r.total_credit_minor,
    total_debit: formatAmount(r.total_debit_minor, 'USD'),
    total_debit_minor: r.total_debit_minor,
    currency: 'USD',
    written_path: r.written_path,
    written_at: r.written_at?.toISOString() ?? null,
  };
}

const FILE_COLUMNS = `id, created_at, created_by, file_id_modifier, effective_date::text AS effective_date,
  return_window_ends::text AS return_window_ends, content_sha256, entry_count, batch_count, total_credit_minor,
  total_debit_minor, written_path, written_at`;

export async function listAchFiles(client: Queryable, limit = 200): Promise<AchFileView[]> {
  const { rows } = await client.query<FileRow>(
    `SELECT ${FILE_COLUMNS} FROM ach_files ORDER BY created_at DESC, id LIMIT $1`,
    [limit],
  );
  return rows.map(achFileView);
}

export async function getAchFile(client: Queryable, fileId: string): Promise<AchFileView | null> {
  const { rows } = await client.query<FileRow>(`SELECT ${FILE_COLUMNS} FROM ach_files WHERE id = $1`, [
    fileId,
  ]);
  return rows[0] ? achFileView(rows[0]) : null;
}

/** The file's name on disk: its UTC creation minute, file id modifier and id, so names never collide. */
export function achFileName(
  file: Pick<AchFileView, 'ach_file_id' | 'created_at' | 'file_id_modifier'>,
): string {
  const stamp = file.created_at.slice(0, 16).replace(/[-:]/g, '').replace('T', '-');
  return `ach-${stamp}-${file.file_id_modifier}-${file.ach_file_id.slice(0, 8)}.ach`;
}

/** The exact text of a stored file, opened and checked against the hash recorded at export. */
export async function achFileText(deps: Pick<AchDeps, 'sealer'>, client: Queryable, fileId: string) {
  const { rows } = await client.query<FileRow & { content_ciphertext: Buffer }>(
    `SELECT ${FILE_COLUMNS}, content_ciphertext FROM ach_files WHERE id = $1`,
    [fileId],
  );
  const row = rows[0];
  if (!row) throw new RefusedError('ach_file_not_found', `no ACH file ${fileId} in this tenant`);
  const text = deps.sealer.open(row.content_ciphertext);
  const digest = createHash('sha256').update(text, 'latin1').digest();
  if (!digest.equals(row.content_sha256))
    throw new Error(`ACH file ${fileId}: the stored text does not match the hash recorded at export`);
  return { text, file: achFileView(row) };
}

async function writeAtomically(target: string, text: string): Promise<void> {
  const dir = path.dirname(target);
  await fs.mkdir(dir, { recursive: true });
  const temp = path.join(
    dir,
    `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
  );
  // 0600: the file holds vendors' full account numbers.
  const handle = await fs.open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(text, 'latin1');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.rename(temp, target);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
  // The rename is durable only once the directory entry is.
  const dirHandle = await fs.open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}

/**
 * Write a recorded file into `outDir` (again, if need be: after a crash, or when the copy was lost).
 * Admin only, because the bytes carry account numbers. Returns the path and the file as recorded.
 */
export async function writeAchFile(
  deps: AchDeps,
  tenantId: string,
  actor: User,
  fileId: string,
  outDir: string,
  now: Date = new Date(),
): Promise<{ path: string; file: AchFileView }> {
  requireAdmin(actor, tenantId);
  const { text, file, window } = await deps.db.withTenant(tenantId, async (client) => {
    const stored = await achFileText(deps, client, fileId);
    if (stored.file.written_at) return { ...stored, window: null };
    // A file first written late (after a crash between the export's commit and its write) reaches the
    // bank only now, so returns may come until the window of a file sent now; settlement must not call
    // its payments paid on the window recorded at export. Later rewrites change nothing.
    const { raw, timezone } = await readStoredAchSettings(client, tenantId);
    return { ...stored, window: fileDates(parseStoredAchSettings(raw), timezone, now).returnWindowEnds };
  });
  const target = path.resolve(outDir, achFileName(file));
  await writeAtomically(target, text);
  const recorded = await deps.db.withTenant(tenantId, async (client) => {
    await confirmStillAllowed(client, actor, ['admin']);
    const { rows } = await client.query<FileRow>(
      `UPDATE ach_files SET written_path = $2, written_at = now(),
              return_window_ends = GREATEST(return_window_ends, COALESCE($3::date, return_window_ends))
       WHERE id = $1 RETURNING ${FILE_COLUMNS}`,
      [fileId, target, window],
    );
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: actor.email,
      action: file.written_at ? 'ach_file.rewritten' : 'ach_file.written',
      subjectId: fileId,
      details: { path: target, content_sha256: file.content_sha256 },
    });
    return achFileView(rows[0]!);
  });
  return { path: target, file: recorded };
}
