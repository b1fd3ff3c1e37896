/**
 * The bank's return and NOC files across tenants that share an ODFI: a return for an entry this tenant
 * never sent (another tenant's trace), the same file imported twice at once, and bank account numbers
 * never appearing in clear (nor as a guessable hash) in the database or in what the functions answer.
 */
import { createHash } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AchDeps, exportAchFile, importAchReturns, setAchSettings } from '../../src/ach/index.js';
import { createSealer } from '../../src/directory/encryption.js';
import { listAlerts } from '../../src/payments/alerts.js';
import { refPath } from '../nacha/support.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { odfiSettings, payByAch } from './support.js';

const RETURN_WEB = refPath('test/testdata/return-WEB.ach');
const COR_EXAMPLE = refPath('test/testdata/cor-example.ach');
const VENDOR_ACCOUNT = '000123456789';
const CORRECTED_ACCOUNT = '1918171614';

describe('ACH returns and NOCs across tenants of one ODFI', () => {
  let a: Fixture;
  let b: Fixture;
  let c: Fixture;
  let deps: AchDeps;
  let outDir: string;
  const answers: unknown[] = [];
  const ids: Record<string, string> = {};
  const id = (name: string) => ids[name]!;

  const status = async (f: Fixture, id: string) =>
    (
      await f.t.db.withSystem((q) =>
        q.query<{ status: string; failure_code: string | null }>(
          'SELECT status, failure_code FROM payments WHERE id = $1',
          [id],
        ),
      )
    ).rows[0]!;

  beforeAll(async () => {
    a = await createFixture({ slug: 'tenant-a' });
    b = await createFixture({ slug: 'tenant-b', t: a.t, sandbox: a.sandbox });
    c = await createFixture({ slug: 'tenant-c', t: a.t, sandbox: a.sandbox });
    deps = { db: a.t.db, sealer: createSealer('test-secret'), onAlert: a.deps.onAlert };
    outDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ach-returns-'));
    for (const f of [a, b, c])
      await f.addMethod({ rail: 'ach', token: 'nacha:operating', provider: 'nacha', label: 'Operating' });
    await setAchSettings(a.t.db, a.tenant.id, a.admin, deps.sealer, odfiSettings);
    await setAchSettings(a.t.db, b.tenant.id, b.admin, deps.sealer, odfiSettings);
    await setAchSettings(a.t.db, c.tenant.id, c.admin, deps.sealer, {
      ...odfiSettings,
      odfiRouting: '121042882',
      immediateDestination: '231380104',
    });
  });
  afterAll(async () => {
    await fs.rm(outDir, { recursive: true, force: true });
    await c?.close();
    await b?.close();
    await a?.close();
  });

  it("tenant B's file takes the ODFI's first traces; tenant A importing a return for them changes nothing of B's", async () => {
    await b.addInvoice('INV-B-1', 123_54);
    await b.addInvoice('INV-B-2', 10_00);
    await b.addInvoice('INV-B-3', 45_65);
    ids.b1 = await payByAch(b, 'INV-B-1', '123.54');
    ids.b2 = await payByAch(b, 'INV-B-2', '10.00');
    ids.b3 = await payByAch(b, 'INV-B-3', '45.65');
    const exported = await exportAchFile(deps, b.tenant.id, b.admin, { outDir });
    answers.push(exported);
    expect(exported.file?.entry_count).toBe(3);

    const imported = await importAchReturns(deps, a.tenant.id, a.admin, {
      bytes: await fs.readFile(RETURN_WEB),
      fileName: 'return-WEB.ach',
    });
    answers.push(imported);
    expect(imported.returns.map((r) => r.outcome)).toEqual(['unmatched', 'unmatched']);
    expect((await status(b, id('b1'))).status).toBe('processing');
    expect((await status(b, id('b3'))).status).toBe('processing');
    const alertsA = await a.t.db.withTenant(a.tenant.id, (q) => listAlerts(q));
    expect(alertsA.filter((x) => x.kind === 'ach_return_unmatched')).toHaveLength(2);
    const alertsB = await b.t.db.withTenant(b.tenant.id, (q) => listAlerts(q));
    expect(alertsB).toEqual([]);
  });

  it('the same return file imported twice at once is applied once: one failure, one reschedule', async () => {
    const run = () =>
      importAchReturns(deps, b.tenant.id, b.admin, { bytes: RETURN_WEB_BYTES(), fileName: 'return-WEB.ach' });
    const [x, y] = await Promise.all([run(), run()]);
    answers.push(x, y);
    const outcomes = [...x.returns, ...y.returns].map((r) => `${r.return_code}:${r.outcome}`).sort();
    expect(outcomes).toEqual(['R01:duplicate', 'R01:failed', 'R03:duplicate', 'R03:failed']);
    expect(await status(b, id('b1'))).toEqual({ status: 'failed', failure_code: 'insufficient_funds' });
    expect(await status(b, id('b3'))).toEqual({ status: 'failed', failure_code: 'payment_method_invalid' });
    expect((await status(b, id('b2'))).status).toBe('processing');
    const schedules = await b.t.db.withTenant(b.tenant.id, (q) =>
      q.query<{ n: number }>('SELECT count(*)::int AS n FROM scheduled_payments'),
    );
    expect(schedules.rows[0]!.n).toBe(1);
    const returns = await b.t.db.withTenant(b.tenant.id, (q) =>
      q.query<{ n: number }>('SELECT count(*)::int AS n FROM ach_returns'),
    );
    expect(returns.rows[0]!.n).toBe(2);
  });

  it('NOC C01: the corrected account number is nowhere in the database in clear, nor in any answer', async () => {
    await c.addInvoice('INV-C-1', 250_00);
    ids.c1 = await payByAch(c, 'INV-C-1', '250.00');
    const exported = await exportAchFile(deps, c.tenant.id, c.admin, { outDir });
    answers.push(exported);
    const imported = await importAchReturns(deps, c.tenant.id, c.admin, {
      bytes: await fs.readFile(COR_EXAMPLE),
      fileName: 'cor-example.ach',
    });
    answers.push(imported);
    expect(imported.corrections.map((k) => k.outcome)).toEqual(['proposed']);
    const again = await importAchReturns(deps, c.tenant.id, c.admin, {
      bytes: await fs.readFile(COR_EXAMPLE),
      fileName: 'cor-example-again.ach',
    });
    expect(again.corrections.map((k) => k.outcome)).toEqual(['duplicate']);

    // Every row of every table, as text.
    const dump = await a.t.db.withSystem(async (q) => {
      const { rows: tables } = await q.query<{ t: string }>(
        "SELECT quote_ident(table_name) AS t FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
      );
      let text = '';
      for (const { t } of tables) {
        const { rows } = await q.query<{ r: string }>(`SELECT row_to_json(x)::text AS r FROM ${t} x`);
        text += rows.map((r) => r.r).join('\n');
      }
      return text;
    });
    for (const secret of [VENDOR_ACCOUNT, CORRECTED_ACCOUNT]) {
      expect(dump.includes(secret), `${secret} in the database`).toBe(false);
      expect(JSON.stringify(answers).includes(secret), `${secret} in an answer`).toBe(false);
    }
  });

  it('NOC C01: the stored correction digest is not an unkeyed hash of the account number (brute-forceable)', async () => {
    const { rows } = await c.t.db.withTenant(c.tenant.id, (q) =>
      q.query<{ d: Buffer }>('SELECT corrected_digest AS d FROM ach_corrections'),
    );
    const guess = createHash('sha256').update(`C01\n${CORRECTED_ACCOUNT}`).digest();
    expect(rows[0]!.d.equals(guess)).toBe(false);
    // Keyed by the paygate secret, and still the same for the same NOC: that is how a re-import is a duplicate.
    expect(rows[0]!.d.equals(deps.sealer.digest(`C01\n${CORRECTED_ACCOUNT}`))).toBe(true);
  });

  it('a correction recorded with the old unkeyed digest is still a duplicate on re-import, and is rekeyed', async () => {
    const legacy = createHash('sha256').update(`C01\n${CORRECTED_ACCOUNT}`).digest();
    await c.t.db.withTenant(c.tenant.id, (q) =>
      q.query('UPDATE ach_corrections SET corrected_digest = $1', [legacy]),
    );
    const again = await importAchReturns(deps, c.tenant.id, c.admin, {
      bytes: await fs.readFile(COR_EXAMPLE),
      fileName: 'cor-example-after-upgrade.ach',
    });
    expect(again.corrections.map((k) => k.outcome)).toEqual(['duplicate']);
    const { rows } = await c.t.db.withTenant(c.tenant.id, (q) =>
      q.query<{ d: Buffer }>('SELECT corrected_digest AS d FROM ach_corrections'),
    );
    expect(rows.map((r) => r.d.equals(deps.sealer.digest(`C01\n${CORRECTED_ACCOUNT}`)))).toEqual([true]);
  });
});

let cached: Buffer | null = null;
function RETURN_WEB_BYTES(): Buffer {
  cached ??= readFileSync(RETURN_WEB);
  return cached;
}
