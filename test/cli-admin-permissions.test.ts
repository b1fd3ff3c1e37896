/**
 * The admin CLI (the built `paygate`, as an agent with a shell would run it):
 * who may change what, the first-admin rule, card numbers disguised as tokens, and flags that are
 * documented but go nowhere.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliFor } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

describe('paygate admin CLI', () => {
  let t: TestDatabase;
  let cli: ReturnType<typeof cliFor>;
  let adminToken: string;
  let viewerToken: string;
  let approverToken: string;

  const storedTokens = async () => {
    const { rows } = await t.db.withSystem((c) =>
      c.query<{ provider_token: string; label: string | null; provider_customer: string | null }>(
        'SELECT provider_token, label, provider_customer FROM payment_methods',
      ),
    );
    return rows;
  };

  beforeAll(async () => {
    t = await createTestDatabase();
    cli = cliFor(t.url);
    await cli.json(['tenant', 'create', 'admincli']);
    // First user of an empty tenant: only an admin.
    const approverFirst = await cli.cli([
      'user',
      'add',
      'first@example.com',
      '--tenant',
      'admincli',
      '--role',
      'approver',
    ]);
    expect(approverFirst.code).toBe(1);
    adminToken = (
      await cli.json<{ token: string }>([
        'user',
        'add',
        'admin@example.com',
        '--tenant',
        'admincli',
        '--role',
        'admin',
      ])
    ).token;
    const env = { PAYGATE_USER_TOKEN: adminToken };
    viewerToken = (
      await cli.json<{ token: string }>(
        ['user', 'add', 'v@example.com', '--tenant', 'admincli', '--role', 'viewer'],
        env,
      )
    ).token;
    approverToken = (
      await cli.json<{ token: string }>(
        ['user', 'add', 'a@example.com', '--tenant', 'admincli', '--role', 'approver'],
        env,
      )
    ).token;
  });
  afterAll(async () => t?.drop());

  it('a second "first admin" without a token is refused; a viewer or approver cannot run changing commands', async () => {
    const second = await cli.cli([
      'user',
      'add',
      'intruder@example.com',
      '--tenant',
      'admincli',
      '--role',
      'admin',
    ]);
    expect(second.code).toBe(1);
    for (const token of [viewerToken, approverToken, 'pgu_not_a_real_token']) {
      const env = { PAYGATE_USER_TOKEN: token };
      const runs = [
        ['user', 'add', 'x@example.com', '--tenant', 'admincli', '--role', 'admin'],
        ['agent-key', 'create', '--tenant', 'admincli'],
        ['payment-method', 'add', '--tenant', 'admincli', '--rail', 'stripe', '--token', 'pm_card_visa'],
        [
          'invoice',
          'add',
          '--tenant',
          'admincli',
          '--number',
          'INV-X',
          '--vendor',
          'Nobody',
          '--amount',
          '1.00',
          '--currency',
          'USD',
        ],
      ];
      for (const args of runs) {
        const r = await cli.cli(args, env);
        expect(r.code, `${args.join(' ')} as ${token.slice(0, 8)}: ${r.stderr}`).toBe(1);
        expect(r.stdout).not.toMatch(/pgu_|pgk_/);
      }
    }
    // An admin token of another tenant does not work here.
    await cli.json(['tenant', 'create', 'othercli']);
    const otherAdmin = (
      await cli.json<{ token: string }>([
        'user',
        'add',
        'o@example.com',
        '--tenant',
        'othercli',
        '--role',
        'admin',
      ])
    ).token;
    const cross = await cli.cli(['agent-key', 'create', '--tenant', 'admincli'], {
      PAYGATE_USER_TOKEN: otherAdmin,
    });
    expect(cross.code).toBe(1);
  });

  it('card numbers are refused as tokens and labels, whatever separates the digit groups', async () => {
    const env = { PAYGATE_USER_TOKEN: adminToken };
    const pans = [
      '4242424242424242',
      '4242-4242-4242-4242',
      '4242.4242.4242.4242',
      '4242_4242_4242_4242',
      '4242:4242:4242:4242',
      'tok_4242.4242.4242.4242',
    ];
    const accepted: string[] = [];
    for (const token of pans) {
      const r = await cli.cli(
        ['payment-method', 'add', '--tenant', 'admincli', '--rail', 'stripe', '--token', token],
        env,
      );
      if (r.code === 0) accepted.push(`token ${token}`);
    }
    for (const label of [
      'Visa 4242 4242 4242 4242',
      'Visa 4242/4242/4242/4242',
      'Visa 4242  4242  4242  4242',
    ]) {
      const r = await cli.cli(
        [
          'payment-method',
          'add',
          '--tenant',
          'admincli',
          '--rail',
          'stripe',
          '--token',
          `pm_label_${label.length}_${label.charCodeAt(9)}`,
          '--label',
          label,
        ],
        env,
      );
      if (r.code === 0) accepted.push(`label ${label}`);
    }
    expect(accepted).toEqual([]);
    // Dates, times and invoice-like numbers in a label are not taken for card numbers.
    const dated = await cli.cli(
      [
        'payment-method',
        'add',
        '--tenant',
        'admincli',
        '--rail',
        'stripe',
        '--token',
        'pm_card_amex',
        '--label',
        'Amex since 2026-11-26 12:00:00, ref INV-2025-0001-7',
      ],
      env,
    );
    expect(dated.code, dated.stderr).toBe(0);
    const stored = await storedTokens();
    for (const row of stored) {
      expect(`${row.provider_token} ${row.label ?? ''}`.replace(/\D/g, '')).not.toContain('4242424242424242');
    }
  });

  it('payment-method add --customer is stored (it is needed off-session in live mode)', async () => {
    const r = await cli.json<{ payment_method_id: string }>(
      [
        'payment-method',
        'add',
        '--tenant',
        'admincli',
        '--rail',
        'stripe',
        '--token',
        'pm_card_mastercard',
        '--customer',
        'cus_H3Customer1',
      ],
      { PAYGATE_USER_TOKEN: adminToken },
    );
    expect(r.payment_method_id).toBeTruthy();
    const row = (await storedTokens()).find((m) => m.provider_token === 'pm_card_mastercard');
    expect(row?.provider_customer).toBe('cus_H3Customer1');
  });

  it('payment-method remove: bad id is a usage error (2), viewer refused, admin removes once', async () => {
    const added = await cli.json<{ payment_method_id: string }>(
      ['payment-method', 'add', '--tenant', 'admincli', '--rail', 'paypal', '--token', 'pp_vault_success'],
      { PAYGATE_USER_TOKEN: adminToken },
    );
    const bad = await cli.cli(['payment-method', 'remove', "x' OR 1=1", '--tenant', 'admincli'], {
      PAYGATE_USER_TOKEN: adminToken,
    });
    expect(bad.code).toBe(2);
    const viewer = await cli.cli(
      ['payment-method', 'remove', added.payment_method_id, '--tenant', 'admincli'],
      {
        PAYGATE_USER_TOKEN: viewerToken,
      },
    );
    expect(viewer.code).toBe(1);
    const ok = await cli.cli(['payment-method', 'remove', added.payment_method_id, '--tenant', 'admincli'], {
      PAYGATE_USER_TOKEN: adminToken,
    });
    expect(ok.code).toBe(0);
    const again = await cli.cli(
      ['payment-method', 'remove', added.payment_method_id, '--tenant', 'admincli'],
      {
        PAYGATE_USER_TOKEN: adminToken,
      },
    );
    expect(again.code).toBe(1);
  });
});
