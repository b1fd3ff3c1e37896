/**
 * `paygate payments list` and `paygate alerts list` show the newest rows up to a limit (200 and 500 by
 * default, `--limit N`). A list cut short says so on stderr, so nobody takes it for the whole; the --json
 * array on stdout keeps its shape. The built CLI in a child process, on a real database.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliFor } from './support/cli.js';
import { createFixture, type Fixture, payThroughEngine } from './support/fixture.js';

describe('paygate payments list / alerts list: a limit that was hit is said', () => {
  let f: Fixture;
  let cli: ReturnType<typeof cliFor>;
  let dataDir: string;
  let viewer: Record<string, string>;
  const paid: string[] = [];

  beforeAll(async () => {
    f = await createFixture({ slug: 'limits' });
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-limits-'));
    cli = cliFor(f.t.url, dataDir);
    viewer = { PAYGATE_USER_TOKEN: f.approver.token };
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
    for (const n of [1, 2, 3])
      paid.push(
        (
          await payThroughEngine(f, f.agentKey, {
            invoice: `INV-L-${n}`,
            amountMinor: n * 10_00,
            method: 'stripe',
          })
        ).payment_id,
      );
  });
  afterAll(async () => {
    await fs.rm(dataDir, { recursive: true, force: true });
    await f?.close();
  });

  it('payments list --limit 2 of 3: the two newest, the same array shape, and a note on stderr', async () => {
    const cut = await cli.cli(['payments', 'list', '--tenant', 'limits', '--limit', '2', '--json'], viewer);
    expect(cut.code).toBe(0);
    const rows = JSON.parse(cut.stdout) as { payment_id: string }[];
    expect(Array.isArray(rows)).toBe(true);
    expect(rows.map((r) => r.payment_id).sort()).toEqual([paid[1], paid[2]].sort());
    expect(cut.stderr).toMatch(/showing the newest 2 payments; there are more: use --limit N/);

    const text = await cli.cli(['payments', 'list', '--tenant', 'limits', '--limit', '2'], viewer);
    expect(text.code).toBe(0);
    expect(text.stderr).toMatch(/showing the newest 2 payments; there are more/);
    expect(text.stdout).not.toMatch(/there are more/);

    for (const complete of [
      ['--limit', '3'],
      [], // the default, 200
    ]) {
      const all = await cli.cli(['payments', 'list', '--tenant', 'limits', ...complete, '--json'], viewer);
      expect(all.code).toBe(0);
      expect((JSON.parse(all.stdout) as unknown[]).length).toBe(3);
      expect(all.stderr).not.toMatch(/there are more/);
    }
  });

  it('alerts list: 501 alerts are cut at the default 500 with a note; --limit 501 shows them all', async () => {
    await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query(
        `INSERT INTO alerts (tenant_id, kind, code, message, next_step)
         SELECT $1, 'test_limit', 'declined', 'alert ' || n, 'nothing' FROM generate_series(1, 501) AS n`,
        [f.tenant.id],
      ),
    );
    const cut = await cli.cli(['alerts', 'list', '--tenant', 'limits', '--json'], viewer);
    expect(cut.code).toBe(0);
    expect((JSON.parse(cut.stdout) as unknown[]).length).toBe(500);
    expect(cut.stderr).toMatch(/showing the newest 500 alerts; there are more: use --limit N/);

    const all = await cli.cli(['alerts', 'list', '--tenant', 'limits', '--limit', '501', '--json'], viewer);
    expect(all.code).toBe(0);
    expect((JSON.parse(all.stdout) as unknown[]).length).toBe(501);
    expect(all.stderr).not.toMatch(/there are more/);
  });

  it('a malformed --limit is bad usage: exit 2, naming --limit, before any token is asked for', async () => {
    for (const [cmd, value] of [
      ['payments', '0'],
      ['payments', '2.5'],
      ['alerts', 'many'],
      ['alerts', '10001'],
    ] as const) {
      const bad = await cli.cli([cmd, 'list', '--tenant', 'limits', '--limit', value]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain(`--limit "${value}" must be a whole number from 1 to 10000`);
    }
  });
});
