/**
 * The command line as DESIGN.md documents it to other programs: `payments show ID`, listings that keep
 * what they are asked for however busy the tenant, and usage errors (exit 2) that change nothing.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApprovalRequired, payInvoice } from '../src/payments/pay.js';
import { httpClient, ok, startHttp } from './mcp/helpers.js';
import { cliFor, startCli } from './support/cli.js';
import { createFixture, type Fixture, payThroughEngine } from './support/fixture.js';

describe('paygate CLI contract', () => {
  let f: Fixture;
  let cli: ReturnType<typeof cliFor>;

  beforeAll(async () => {
    f = await createFixture();
    cli = cliFor(f.t.url);
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa' });
  });
  afterAll(async () => f.close());

  async function owner<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ connectionString: f.t.adminUrl });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }

  it('a pending request stays in the pending lists (CLI and list_approvals) behind 500 newer requests of other statuses and agents', async () => {
    await f.addInvoice('INV-OLD-1', 120_00);
    const pending = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { invoice: 'INV-OLD-1', amount: '120.00', currency: 'USD', method: 'stripe' },
    )) as ApprovalRequired;
    expect(pending.status).toBe('approval_required');
    // A busy tenant: another agent key's 500 later requests, decided (rejected) since.
    const other = await f.newAgent({ name: 'busy' });
    await owner((c) =>
      c.query(
        `INSERT INTO approvals (tenant_id, action, params, params_digest, agent_key_id, summary, amount_minor,
                                currency, status, expires_at, decided_at, created_at)
         SELECT a.tenant_id, a.action, a.params, sha256(convert_to(g::text, 'UTF8')), $2, a.summary, a.amount_minor,
                a.currency, 'rejected', a.expires_at, now(), a.created_at + g * interval '1 second'
           FROM approvals a, generate_series(1, 500) g WHERE a.id = $1`,
        [pending.approval_id, other.agentKey.id],
      ),
    );

    const listed = await cli.json<{ approval_id: string; status: string }[]>(
      ['approvals', 'list', '--tenant', 'acme', '--status', 'pending'],
      { PAYGATE_USER_TOKEN: f.approver.token },
    );
    expect(listed.map((a) => a.approval_id)).toContain(pending.approval_id);
    expect(listed.every((a) => a.status === 'pending')).toBe(true);

    const http = await startHttp(f.deps);
    try {
      const client = await httpClient(http.url, f.agentKeySecret);
      try {
        const all = ok<{ approvals: { approval_id: string }[] }>(
          await client.callTool({ name: 'list_approvals', arguments: {} }),
        );
        expect(all.approvals.map((a) => a.approval_id)).toEqual([pending.approval_id]);
        const onlyPending = ok<{ approvals: { approval_id: string }[] }>(
          await client.callTool({ name: 'list_approvals', arguments: { status: 'pending' } }),
        );
        expect(onlyPending.approvals.map((a) => a.approval_id)).toEqual([pending.approval_id]);
      } finally {
        await client.close();
      }
    } finally {
      await http.close();
    }
  });

  it('payments show ID, as DESIGN.md writes it, finds the payment in the tenant of the token; --tenant still works', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-SHOW-1',
      amountMinor: 75_00,
      method: 'stripe',
    });
    const env = { PAYGATE_USER_TOKEN: f.approver.token };
    const shown = await cli.json<{ payment_id: string; amount_minor: number; amount: string }>(
      ['payments', 'show', paid.payment_id],
      env,
    );
    expect(shown).toMatchObject({ payment_id: paid.payment_id, amount: '75.00', amount_minor: 7500 });
    const byConfirmation = await cli.json<{ payment_id: string }>(
      ['payments', 'show', paid.confirmation_number],
      env,
    );
    expect(byConfirmation.payment_id).toBe(paid.payment_id);
    const withTenant = await cli.json<{ payment_id: string }>(
      ['payments', 'show', paid.payment_id, '--tenant', 'acme'],
      env,
    );
    expect(withTenant.payment_id).toBe(paid.payment_id);

    // The token decides the tenant: a human of another tenant does not see it.
    await cli.json(['tenant', 'create', 'globex']);
    const globexAdmin = await cli.json<{ token: string }>([
      'user',
      'add',
      'admin@globex.example',
      '--tenant',
      'globex',
      '--role',
      'admin',
    ]);
    const elsewhere = await cli.cli(['payments', 'show', paid.payment_id], {
      PAYGATE_USER_TOKEN: globexAdmin.token,
    });
    expect(elsewhere.code).toBe(1);
    expect(elsewhere.stderr).toMatch(/no payment .* in tenant globex/);
    const noToken = await cli.cli(['payments', 'show', paid.payment_id]);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/personal access token/);
    const badToken = await cli.cli(['payments', 'show', paid.payment_id], {
      PAYGATE_USER_TOKEN: 'pgu_not-a-real-token',
    });
    expect(badToken.code).toBe(1);
    expect(badToken.stderr).not.toContain('pgu_not-a-real-token');
  });

  it.each([
    [
      ['user', 'add', 'limitless@example.com', '--tenant', 'acme', '--role', 'approver', '--currency', 'USD'],
      /--currency USD is the currency of --limit, which is missing/,
    ],
    [
      ['tenant', 'create', 'nodual', '--currency', 'USD'],
      /--currency USD is the currency of --dual-approval-above, which is missing/,
    ],
    [
      ['agent-key', 'create', '--tenant', 'acme', '--name', 'uncapped', '--currency', 'USD'],
      /--currency USD is the currency of --max-per-payment or --max-per-day, which is missing/,
    ],
    [
      ['alerts', 'list', '--tenant', 'acme', '--status', 'closed'],
      /--status "closed" is not one of open, resolved/,
    ],
    [
      ['tenant', 'create', 'longname', '--name', 'N'.repeat(201)],
      /tenant name \(--name\) must be 1-200 characters/,
    ],
    [['tenant', 'create', 'noname', '--name', ' '], /tenant name \(--name\) must be 1-200 characters/],
    [
      ['agent-key', 'create', '--tenant', 'acme', '--name', ''],
      /agent key name \(--name\) must be 1-200 characters/,
    ],
    [
      ['agent-key', 'create', '--tenant', 'acme', '--name', 'a'.repeat(201)],
      /agent key name \(--name\) must be 1-200 characters/,
    ],
    [
      [
        'payment-method',
        'add',
        '--tenant',
        'acme',
        '--rail',
        'paypal',
        '--token',
        'B-LONGLABEL',
        '--label',
        'L'.repeat(201),
      ],
      /--label must be 1-200 characters/,
    ],
    [
      [
        'payment-method',
        'add',
        '--tenant',
        'acme',
        '--rail',
        'ach',
        '--token',
        'pm_usBankAccount_success',
        '--bank-name',
        '',
      ],
      /--bank-name must be 1-200 characters/,
    ],
    [
      ['ach', 'files', 'write', 'not-a-uuid', '--tenant', 'acme'],
      /"not-a-uuid" is not an ACH file id \(a UUID\): use an ach_file_id from `paygate ach files list`/,
    ],
    [['ach', 'corrections', 'approve', 'C-1', '--tenant', 'acme'], /"C-1" is not a correction id/],
    [['ach', 'corrections', 'reject', 'C-1', '--tenant', 'acme'], /"C-1" is not a correction id/],
    [
      [
        'approvals',
        'reject',
        '00000000-0000-4000-8000-000000000000',
        '--as',
        'admin@example.com',
        '--reason',
        'r'.repeat(501),
      ],
      /--reason is 501 characters: at most 500/,
    ],
    [
      ['schedules', 'cancel', '--tenant', 'acme', '--id', 'sched-1'],
      /"sched-1" is not a scheduled payment id \(a UUID\)/,
    ],
  ])('bad usage exits 2 naming what is wrong and changes nothing: %j', async (args, message) => {
    const count = () =>
      owner(async (c) => {
        const { rows } = await c.query<{ n: string }>(
          `SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM tenants) + (SELECT count(*) FROM agent_keys)
                  + (SELECT count(*) FROM payment_methods) + (SELECT count(*) FROM audit_log) AS n`,
        );
        return rows[0]!.n;
      });
    const before = await count();
    const result = await cli.cli(args as string[], { PAYGATE_USER_TOKEN: f.admin.token });
    expect(result.stderr).toMatch(message);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(await count()).toBe(before);
  });

  it('a bad approval wait names where it came from: --approval-wait or PAYGATE_MCP_APPROVAL_WAIT_SECONDS (exit 2)', async () => {
    const flag = await cli.cli(['mcp', '--approval-wait', '10m'], { PAYGATE_AGENT_KEY: f.agentKeySecret });
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/--approval-wait "10m" must be a whole number of seconds/);
    const env = await cli.cli(['mcp'], {
      PAYGATE_AGENT_KEY: f.agentKeySecret,
      PAYGATE_MCP_APPROVAL_WAIT_SECONDS: '-1',
    });
    expect(env.code).toBe(2);
    expect(env.stderr).toMatch(/PAYGATE_MCP_APPROVAL_WAIT_SECONDS "-1" must be a whole number of seconds/);
    expect(env.stdout).toBe('');
  });

  it('a command without its subcommand is bad usage (exit 2, help on stderr); help asked for is success', async () => {
    for (const args of [[], ['invoice'], ['approvals'], ['ach', 'corrections']]) {
      const r = await cli.cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/Usage: paygate/);
      expect(r.stdout, args.join(' ')).toBe('');
    }
    for (const args of [['--help'], ['invoice', '--help'], ['help', 'invoice']]) {
      const r = await cli.cli(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout, args.join(' ')).toMatch(/Usage: paygate/);
    }
  });

  it('with --json, sandbox prints its URLs as one JSON object {stripe, paypal, ledger}', async () => {
    const sandbox = startCli(['sandbox', '--json']);
    try {
      const line = await sandbox.firstLine;
      const urls = JSON.parse(line) as { stripe: string; paypal: string; ledger: string };
      expect(urls.stripe).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(urls.paypal).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(await (await fetch(urls.ledger)).json()).toEqual({ entries: [] });
    } finally {
      expect(await sandbox.stop()).toBe(0);
    }
  });
});
