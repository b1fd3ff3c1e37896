import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliFor } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

describe('paygate CLI: setting a tenant up', () => {
  let t: TestDatabase;
  let cli: ReturnType<typeof cliFor>;
  let adminToken: string;

  beforeAll(async () => {
    t = await createTestDatabase();
    cli = cliFor(t.url);
    await cli.json([
      'tenant',
      'create',
      'acme',
      '--name',
      'Acme Corp',
      '--dual-approval-above',
      '10000.00',
      '--currency',
      'USD',
    ]);
    const admin = await cli.json<{ token: string; role: string }>([
      'user',
      'add',
      'admin@example.com',
      '--tenant',
      'acme',
      '--role',
      'admin',
    ]);
    expect(admin.role).toBe('admin');
    expect(admin.token).toMatch(/^pgu_/);
    adminToken = admin.token;
  });
  afterAll(async () => t.drop());

  it('stores personal access tokens and agent keys only as hashes', async () => {
    const key = await cli.json<{ key: string; agent_key_id: string }>(
      ['agent-key', 'create', '--tenant', 'acme', '--max-per-payment', '1000.00', '--currency', 'USD'],
      { PAYGATE_USER_TOKEN: adminToken },
    );
    expect(key.key).toMatch(/^pgk_/);
    const owner = new pg.Client({ connectionString: t.adminUrl });
    await owner.connect();
    try {
      const dump = await owner.query<{ t: string }>(
        `SELECT concat_ws('|', (SELECT string_agg(u::text, '|') FROM users u), (SELECT string_agg(k::text, '|') FROM agent_keys k),
                (SELECT string_agg(a.content, '|') FROM audit_log a)) AS t`,
      );
      expect(dump.rows[0]!.t).not.toContain(adminToken);
      expect(dump.rows[0]!.t).not.toContain(key.key);
      expect(dump.rows[0]!.t).not.toContain(key.key.slice(4));
    } finally {
      await owner.end();
    }
  });

  it('refuses a second "first admin" and changing commands without an admin token (exit 1)', async () => {
    const second = await cli.cli([
      'user',
      'add',
      'mallory@example.com',
      '--tenant',
      'acme',
      '--role',
      'admin',
    ]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/personal access token/);
    const vendor = await cli.cli(['vendor', 'add', 'Evil', '--tenant', 'acme']);
    expect(vendor.code).toBe(1);
    const approver = await cli.json<{ token: string }>(
      [
        'user',
        'add',
        'jdoe@example.com',
        '--tenant',
        'acme',
        '--role',
        'approver',
        '--limit',
        '5000.00',
        '--currency',
        'USD',
      ],
      {
        PAYGATE_USER_TOKEN: adminToken,
      },
    );
    const byApprover = await cli.cli(['vendor', 'add', 'Evil', '--tenant', 'acme'], {
      PAYGATE_USER_TOKEN: approver.token,
    });
    expect(byApprover.code).toBe(1);
    expect(byApprover.stderr).toMatch(/not an admin/);
    const wrongToken = await cli.cli(['invoice', 'list', '--tenant', 'acme'], {
      PAYGATE_USER_TOKEN: 'pgu_not-a-real-token',
    });
    expect(wrongToken.code).toBe(1);
  });

  it.each([
    [
      [
        'invoice',
        'add',
        '--tenant',
        'acme',
        '--number',
        'INV-1',
        '--vendor',
        'V',
        '--amount',
        '500.001',
        '--currency',
        'USD',
      ],
      /"500\.001" has 3 decimals/,
    ],
    [
      [
        'invoice',
        'add',
        '--tenant',
        'acme',
        '--number',
        'INV-1',
        '--vendor',
        'V',
        '--amount',
        '5',
        '--currency',
        'ZZZ',
      ],
      /unknown currency "ZZZ"/,
    ],
    [
      [
        'invoice',
        'add',
        '--tenant',
        'acme',
        '--number',
        'INV-1',
        '--vendor',
        'V',
        '--amount',
        '1e3',
        '--currency',
        'USD',
      ],
      /"1e3" is not a plain decimal/,
    ],
    [
      [
        'invoice',
        'add',
        '--tenant',
        'acme',
        '--number',
        'INV 1',
        '--vendor',
        'V',
        '--amount',
        '5.00',
        '--currency',
        'USD',
      ],
      /invoice number "INV 1"/,
    ],
    [
      [
        'invoice',
        'add',
        '--tenant',
        'acme',
        '--number',
        'INV-1',
        '--vendor',
        'V',
        '--amount',
        '5.00',
        '--currency',
        'USD',
        '--due',
        '2025-02-30',
      ],
      /"2025-02-30" is not a calendar date/,
    ],
    [
      ['user', 'add', 'not-an-email', '--tenant', 'acme', '--role', 'admin'],
      /"not-an-email" is not an email/,
    ],
    [['user', 'add', 'x@example.com', '--tenant', 'acme', '--role', 'owner'], /role "owner"/],
    [['tenant', 'create', 'Bad Slug!'], /tenant slug "Bad Slug!"/],
    [['tenant', 'create', 'tz', '--timezone', 'Mars/Olympus'], /"Mars\/Olympus" is not an IANA time zone/],
    [
      ['vendor', 'add', 'Bank', '--tenant', 'acme', '--routing', '123456789', '--account', '1234'],
      /routing number "123456789"/,
    ],
    [
      ['payment-method', 'add', '--tenant', 'acme', '--rail', 'bitcoin', '--token', 'x_123'],
      /rail "bitcoin"/,
    ],
    [
      ['agent-key', 'create', '--tenant', 'acme', '--max-per-day', '-5', '--currency', 'USD'],
      /"-5" is not a plain decimal/,
    ],
    [['invoice', 'add', '--tenant', 'acme'], /required option/],
    [['no-such-command'], /unknown command/],
  ])('bad usage exits 2 naming the bad value: %j', async (args, message) => {
    const result = await cli.cli(args as string[], { PAYGATE_USER_TOKEN: adminToken });
    expect(result.stderr).toMatch(message);
    expect(result.code).toBe(2);
  });

  it('refuses a raw card number anywhere and it appears nowhere in the database or the output', async () => {
    const pan = '4111 1111 1111 1111';
    const compact = '4111111111111111';
    const attempts = [
      ['payment-method', 'add', '--tenant', 'acme', '--rail', 'stripe', '--token', compact],
      [
        'payment-method',
        'add',
        '--tenant',
        'acme',
        '--rail',
        'stripe',
        '--token',
        'pm_card_visa',
        '--label',
        `card ${pan}`,
      ],
      ['payment-method', 'add', '--tenant', 'acme', '--rail', 'stripe', '--token', '4111-1111-1111-1111'],
    ];
    let output = '';
    for (const args of attempts) {
      const result = await cli.cli(args, { PAYGATE_USER_TOKEN: adminToken, PAYGATE_LOG_LEVEL: 'trace' });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/never stores card numbers/);
      output += result.stdout + result.stderr;
    }
    expect(output).not.toContain(compact);
    expect(output).not.toContain(pan);
    expect(output).not.toContain('4111-1111-1111-1111');
    const owner = new pg.Client({ connectionString: t.adminUrl });
    await owner.connect();
    try {
      // Every text-ish column of every table, as text.
      const tables = await owner.query<{ table_name: string }>(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
      );
      for (const { table_name } of tables.rows) {
        const { rows } = await owner.query<{ t: string | null }>(
          `SELECT string_agg(x::text, '|') AS t FROM ${table_name} x`,
        );
        const text = (rows[0]?.t ?? '').replace(/[ -]/g, '');
        expect(text, table_name).not.toContain(compact);
      }
    } finally {
      await owner.end();
    }
  });

  it('adds vendors, payment methods and invoices, and lists them as JSON with snake_case fields', async () => {
    const env = { PAYGATE_USER_TOKEN: adminToken };
    const vendor = await cli.json(
      [
        'vendor',
        'add',
        'Acme Supplies',
        '--tenant',
        'acme',
        '--stripe-account',
        'acct_1Acme',
        '--routing',
        '110000000',
        '--account',
        '000123456789',
      ],
      env,
    );
    expect(vendor).toMatchObject({ name: 'Acme Supplies', bank_account_last4: '6789' });
    const method = await cli.json(
      [
        'payment-method',
        'add',
        '--tenant',
        'acme',
        '--rail',
        'stripe',
        '--token',
        'pm_card_visa',
        '--brand',
        'visa',
        '--last4',
        '4242',
      ],
      env,
    );
    expect(method).toMatchObject({ rail: 'stripe', provider: 'stripe', last4: '4242' });
    const invoice = await cli.json(
      [
        'invoice',
        'add',
        '--tenant',
        'acme',
        '--number',
        'INV-2025-001',
        '--vendor',
        'Acme Supplies',
        '--amount',
        '500.00',
        '--currency',
        'USD',
      ],
      env,
    );
    expect(invoice).toMatchObject({
      invoice_number: 'INV-2025-001',
      amount: '500.00',
      amount_minor: 50000,
      currency: 'USD',
      status: 'approved',
    });
    const list = await cli.json<unknown[]>(['invoice', 'list', '--tenant', 'acme'], env);
    expect(list).toEqual([expect.objectContaining({ invoice_number: 'INV-2025-001', amount_minor: 50000 })]);
    const methods = await cli.json<unknown[]>(['payment-method', 'list', '--tenant', 'acme'], env);
    expect(methods).toHaveLength(1);
    const duplicate = await cli.cli(
      [
        'invoice',
        'add',
        '--tenant',
        'acme',
        '--number',
        'INV-2025-001',
        '--vendor',
        'Acme Supplies',
        '--amount',
        '5.00',
        '--currency',
        'USD',
      ],
      env,
    );
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toMatch(/already exists/);
    // The full account number is only ciphertext.
    const owner = new pg.Client({ connectionString: t.adminUrl });
    await owner.connect();
    const { rows } = await owner.query<{ t: string }>(
      "SELECT string_agg(c::text, '|') AS t FROM counterparties c",
    );
    await owner.end();
    expect(rows[0]!.t).not.toContain('000123456789');
  });
});
