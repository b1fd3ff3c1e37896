/**
 * approval tokens over the real MCP HTTP transport and the engine: replaying a token
 * with other parameters or on another tool, token spelling variants, races, refund reuse, amount
 * strings, and the audit trail of approvals (DESIGN.md "Approval tokens").
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approve, expireStaleApprovals } from '../src/approvals/approvals.js';
import { todayIn } from '../src/payments/calendar.js';
import { failed, type HttpServer, httpClient, ok, startHttp } from './mcp/helpers.js';
import { createFixture, type Fixture } from './support/fixture.js';

interface Ask {
  status: 'approval_required';
  approval_id: string;
}

const pay = (invoice: string, amount: string, extra: Record<string, unknown> = {}) => ({
  name: 'pay_invoice',
  arguments: { invoice, amount, currency: 'USD', method: 'stripe', ...extra },
});

describe('approval tokens', () => {
  let f: Fixture;
  let http: HttpServer;
  let client: Client;
  let mainKey: string;
  const clients: Client[] = [];

  async function sql<T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
    const { rows } = await f.t.db.withSystem((c) => c.query(text, params));
    return rows as T[];
  }

  async function askAndApprove(c: Client, call: { name: string; arguments: Record<string, unknown> }) {
    const ask = ok<Ask>(await c.callTool(call));
    expect(ask.status).toBe('approval_required');
    const token = (await approve(f.t.db, f.tenant.id, f.admin, ask.approval_id)).approvalToken!;
    expect(token).toMatch(/^apt_/);
    return { ask, token };
  }

  const paymentsOf = async (invoice: string) =>
    (
      await sql<{ n: number }>(
        'SELECT count(*)::int AS n FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = $1',
        [invoice],
      )
    )[0]!.n;

  beforeAll(async () => {
    f = await createFixture({ slug: 'hostile-tokens' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', last4: '4242' });
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_success' });
    for (const [n, amount] of [
      ['INV-T-VAR', 100_00],
      ['INV-T-SCHED', 110_00],
      ['INV-T-RACE', 120_00],
      ['INV-T-REF', 500_00],
      ['INV-T-OTHER', 100_00],
      ['INV-T-AMT', 500_00],
      ['INV-T-EXP', 130_00],
      ['INV-T-METH', 140_00],
      ['INV-T-AGENT', 150_00],
    ] as const)
      await f.addInvoice(n, amount);
    http = await startHttp(f.deps);
    // A key of its own with room for the many calls below (the default is 60 a minute).
    mainKey = (await f.newAgent({ name: 'hostile', rateLimitPerMinute: 1000 })).key;
    client = await httpClient(http.url, mainKey);
    clients.push(client);
  });
  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await http?.close();
    await f?.close();
  });

  it('token spelling variants (case, whitespace, truncation, padding) are refused and move no money', async () => {
    const { token } = await askAndApprove(client, pay('INV-T-VAR', '100.00'));
    const body = token.slice(4);
    const variants = [
      token.toUpperCase(),
      `APT_${body}`,
      ` ${token}`,
      `${token} `,
      `${token}\n`,
      token.slice(0, -1),
      `${token}A`,
      `apt_${body.toLowerCase() === body ? body.toUpperCase() : body.toLowerCase()}`,
    ];
    for (const v of variants) {
      const error = failed(await client.callTool(pay('INV-T-VAR', '100.00', { approval_token: v })));
      expect(['invalid_approval_token'], `variant ${JSON.stringify(v)}`).toContain(error.code);
    }
    expect(await paymentsOf('INV-T-VAR')).toBe(0);
    // The exact token still works after all the refusals.
    ok(await client.callTool(pay('INV-T-VAR', '100.00', { approval_token: token })));
    expect(await paymentsOf('INV-T-VAR')).toBe(1);
  });

  it('a pay_invoice token is not a schedule_payment token, and a schedule token is bound to its date', async () => {
    const { token: payToken } = await askAndApprove(client, pay('INV-T-SCHED', '110.00'));
    const today = todayIn(f.tenant.timezone);
    const schedule = (date: string, token?: string) => ({
      name: 'schedule_payment',
      arguments: {
        invoice: 'INV-T-SCHED',
        amount: '110.00',
        currency: 'USD',
        method: 'stripe',
        scheduled_date: date,
        ...(token ? { approval_token: token } : {}),
      },
    });
    expect(failed(await client.callTool(schedule(today, payToken))).code).toBe('approval_token_mismatch');
    const ask = ok<Ask>(await client.callTool(schedule(today)));
    const schedToken = (await approve(f.t.db, f.tenant.id, f.admin, ask.approval_id)).approvalToken!;
    // Another date, and the schedule's token on pay_invoice.
    const tomorrow = new Date(`${today}T00:00:00Z`);
    tomorrow.setUTCDate(tomorrow.getUTCDate() + 1);
    expect(
      failed(await client.callTool(schedule(tomorrow.toISOString().slice(0, 10), schedToken))).code,
    ).toBe('approval_token_mismatch');
    expect(
      failed(await client.callTool(pay('INV-T-SCHED', '110.00', { approval_token: schedToken }))).code,
    ).toBe('approval_token_mismatch');
    expect(await paymentsOf('INV-T-SCHED')).toBe(0);
    // Both tokens were refused without being consumed: each still does its own job once.
    ok(await client.callTool(schedule(today, schedToken)));
  });

  it('a token approved for one method does not pay through another rail', async () => {
    const { token } = await askAndApprove(client, pay('INV-T-METH', '140.00'));
    const error = failed(
      await client.callTool(pay('INV-T-METH', '140.00', { method: 'paypal', approval_token: token })),
    );
    expect(error.code).toBe('approval_token_mismatch');
    expect(await paymentsOf('INV-T-METH')).toBe(0);
  });

  it("another agent of the same tenant cannot use this agent's token", async () => {
    const { token } = await askAndApprove(client, pay('INV-T-AGENT', '150.00'));
    const { key } = await f.newAgent({ name: 'thief' });
    const thief = await httpClient(http.url, key);
    clients.push(thief);
    expect(failed(await thief.callTool(pay('INV-T-AGENT', '150.00', { approval_token: token }))).code).toBe(
      'approval_token_other_agent',
    );
    expect(await paymentsOf('INV-T-AGENT')).toBe(0);
  });

  it('two concurrent calls with one token, over two sessions of the key: exactly one payment', async () => {
    const { token } = await askAndApprove(client, pay('INV-T-RACE', '120.00'));
    const second = await httpClient(http.url, mainKey);
    clients.push(second);
    const charges = f.sandbox.ledger.charges().length;
    const results = await Promise.all(
      [client, second, client, second].map((c) =>
        c.callTool(pay('INV-T-RACE', '120.00', { approval_token: token })),
      ),
    );
    const successes = results.filter((r) => !r.isError);
    expect(successes).toHaveLength(1);
    expect(await paymentsOf('INV-T-RACE')).toBe(1);
    expect(f.sandbox.ledger.charges().length - charges).toBe(1);
  });

  it('a refund approval pays one refund: not a second one, not another amount or reason', async () => {
    const { token } = await askAndApprove(client, pay('INV-T-REF', '500.00'));
    const paid = ok<{ payment_id: string }>(
      await client.callTool(pay('INV-T-REF', '500.00', { approval_token: token })),
    );
    const refund = (args: Record<string, unknown>) => ({
      name: 'refund_payment',
      arguments: { payment: paid.payment_id, ...args },
    });
    const ask = ok<Ask>(await client.callTool(refund({ amount: '100.00', reason: 'damaged' })));
    const refundToken = (await approve(f.t.db, f.tenant.id, f.admin, ask.approval_id)).approvalToken!;
    expect(
      failed(
        await client.callTool(refund({ amount: '200.00', reason: 'damaged', approval_token: refundToken })),
      ).code,
    ).toBe('approval_token_mismatch');
    expect(
      failed(
        await client.callTool(refund({ amount: '100.00', reason: 'other', approval_token: refundToken })),
      ).code,
    ).toBe('approval_token_mismatch');
    expect(
      failed(await client.callTool(refund({ amount: '100.00', approval_token: refundToken }))).code,
    ).toBe('approval_token_mismatch');
    ok(await client.callTool(refund({ amount: '100.00', reason: 'damaged', approval_token: refundToken })));
    expect(
      failed(
        await client.callTool(refund({ amount: '100.00', reason: 'damaged', approval_token: refundToken })),
      ).code,
    ).toBe('approval_token_used');
    // The payment's own token cannot be turned into a refund either.
    expect(
      failed(await client.callTool(refund({ amount: '100.00', reason: 'damaged', approval_token: token })))
        .code,
    ).toMatch(/^approval_token_(used|mismatch)$/);
    const refunds = await sql<{ n: number }>('SELECT count(*)::int AS n FROM refunds WHERE payment_id = $1', [
      paid.payment_id,
    ]);
    expect(refunds[0]?.n).toBe(1);
  });

  it('malformed amounts and currencies are invalid_amount errors; nothing is requested or paid', async () => {
    const before = (await sql<{ n: number }>('SELECT count(*)::int AS n FROM approvals'))[0]!.n;
    for (const [amount, currency] of [
      ['1e3', 'USD'],
      ['5e2', 'USD'],
      ['0.1', 'USD'],
      ['-500.00', 'USD'],
      ['+500.00', 'USD'],
      ['500.000', 'USD'],
      ['500.001', 'USD'],
      ['0500.00', 'USD'],
      ['500,00', 'USD'],
      ['5 00.00', 'USD'],
      [' 500.00', 'USD'],
      ['500.00 ', 'USD'],
      ['500.00\n', 'USD'],
      ['５００.００', 'USD'],
      ['٥٠٠.٠٠', 'USD'],
      ['500.', 'USD'],
      ['.50', 'USD'],
      ['Infinity', 'USD'],
      ['NaN', 'USD'],
      ['0x1F4', 'USD'],
      ['99999999999999999999999999999.00', 'USD'],
      ['500.00', 'usd'],
      ['500.00', 'Usd'],
      ['500.00', 'USD '],
      ['500.00', 'XXX1'],
      ['500.00', '__proto__'],
    ] as const) {
      const r = await client.callTool({
        name: 'pay_invoice',
        arguments: { invoice: 'INV-T-AMT', amount, currency, method: 'stripe' },
      });
      const error = failed(r);
      expect(
        ['invalid_amount', 'invalid_currency', 'currency_mismatch', 'amount_mismatch'],
        `${JSON.stringify(amount)} ${JSON.stringify(currency)} -> ${error.code}`,
      ).toContain(error.code);
    }
    const after = (await sql<{ n: number }>('SELECT count(*)::int AS n FROM approvals'))[0]!.n;
    expect(after).toBe(before);
    expect(await paymentsOf('INV-T-AMT')).toBe(0);
    // Non-string amounts are refused by the schema or the engine, never coerced.
    for (const amount of [500, 500.0, ['500.00'], { v: '500.00' }, null]) {
      const r = await client.callTool({
        name: 'pay_invoice',
        arguments: { invoice: 'INV-T-AMT', amount, currency: 'USD', method: 'stripe' },
      });
      expect(r.isError, JSON.stringify(amount)).toBe(true);
    }
  });

  it('an approval that expired is on the audit log, also when the agent asked again before the worker ran', async () => {
    const first = ok<Ask>(await client.callTool(pay('INV-T-EXP', '130.00')));
    await sql("UPDATE approvals SET expires_at = now() - interval '1 second' WHERE id = $1", [
      first.approval_id,
    ]);
    // The agent asks again: a new request replaces the stale one.
    const second = ok<Ask>(await client.callTool(pay('INV-T-EXP', '130.00')));
    expect(second.approval_id).not.toBe(first.approval_id);
    const [row] = await sql<{ status: string }>('SELECT status FROM approvals WHERE id = $1', [
      first.approval_id,
    ]);
    expect(row!.status).toBe('expired');
    // The worker's expiry job runs afterwards, as it would in production.
    await expireStaleApprovals(f.t.db);
    const entries = await sql<{ action: string }>(
      'SELECT action FROM audit_log WHERE tenant_id = $1 AND subject_id = $2 ORDER BY seq',
      [f.tenant.id, first.approval_id],
    );
    // DESIGN: every request, approval, rejection, expiry, consumption and refused token is in the audit log.
    expect(entries.map((e) => e.action)).toContain('approval.expired');
  });
});
