/**
 * The MCP server over Streamable HTTP with the SDK's real Client, against the handler `paygate serve`
 * mounts, on a loopback Express app: tools, the approval protocol, URL elicitation, the refusal table
 * as tool errors, authentication and DNS-rebinding checks, rate limiting, and tenant isolation.
 */
import { request } from 'node:http';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  type ElicitRequest,
  ElicitRequestSchema,
  type ElicitResult,
} from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reject } from '../../src/approvals/approvals.js';
import { createLogger } from '../../src/config.js';
import { errorResult } from '../../src/mcp/results.js';
import { cliFor } from '../support/cli.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { failed, type HttpServer, httpClient, MONEY_MOVING, ok, startHttp, TOOL_NAMES } from './helpers.js';

interface Ask {
  status: 'approval_required';
  approval_id: string;
  approve_url: string;
  summary: string;
}

const pay = (invoice: string, amount: string, extra: Record<string, unknown> = {}) => ({
  name: 'pay_invoice',
  arguments: { invoice, amount, currency: 'USD', method: 'stripe', ...extra },
});

describe('MCP over Streamable HTTP', () => {
  let f: Fixture;
  let http: HttpServer;
  let client: Client;
  const clients: Client[] = [];

  async function connect(key: string, capabilities = {}) {
    const c = await httpClient(http.url, key, capabilities);
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    f = await createFixture();
    await f.addMethod({
      rail: 'stripe',
      token: 'pm_card_visa',
      label: 'Corporate Visa',
      brand: 'visa',
      last4: '4242',
    });
    for (const [n, amount] of [
      ['INV-H-001', 500_00],
      ['INV-H-002', 120_00],
      ['INV-H-003', 75_00],
      ['INV-H-004', 80_00],
      ['INV-H-005', 90_00],
      ['INV-H-006', 30_00],
    ] as const)
      await f.addInvoice(n, amount);
    http = await startHttp(f.deps, { approvalWaitMs: 30_000, approvalPollMs: 20 });
    client = await connect(f.agentKeySecret);
  });
  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await http?.close();
    await f?.close();
  });

  it('lists the eight tools with schemas and honest annotations', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(TOOL_NAMES);
    for (const tool of tools) {
      expect(tool.description?.length).toBeGreaterThan(80);
      expect(tool.inputSchema.type).toBe('object');
      // Error results validate in strict clients: every outputSchema carries the optional error object.
      const output = tool.outputSchema as {
        properties: Record<string, { properties?: object }>;
        required?: string[];
      };
      expect(Object.keys(output.properties.error?.properties ?? {}).sort()).toEqual([
        'code',
        'message',
        'next_step',
        'retryable',
      ]);
      expect(output.required ?? []).not.toContain('error');
      if (MONEY_MOVING.includes(tool.name)) {
        expect(tool.annotations).toMatchObject({
          readOnlyHint: false,
          destructiveHint: true,
          idempotentHint: false,
          openWorldHint: true,
        });
        expect(tool.description).toContain('approval_required');
        expect(tool.description).toContain('approve_url');
        expect(tool.description).toContain('Never invent');
        expect(Object.keys(tool.inputSchema.properties ?? {})).toContain('approval_token');
      } else if (tool.name !== 'cancel_scheduled_payment') {
        expect(tool.annotations?.readOnlyHint).toBe(true);
      }
    }
    const payTool = tools.find((t) => t.name === 'pay_invoice')!;
    expect(payTool.inputSchema.required?.sort()).toEqual(['amount', 'currency', 'invoice', 'method']);
    // Nothing an agent could send is evidence of approval.
    expect(Object.keys(payTool.inputSchema.properties ?? {})).not.toContain('approved_by');
    expect(Object.keys(payTool.inputSchema.properties ?? {})).not.toContain('confirm');
  });

  it('the full approval flow: approval_required, a human approves, the call with the token pays', async () => {
    const ask = ok<Ask>(await client.callTool(pay('INV-H-001', '500.00')));
    expect(ask.status).toBe('approval_required');
    expect(ask.approve_url).toBe(`http://127.0.0.1:8787/approvals/${ask.approval_id}`);
    expect(ask.summary).toContain('500.00 USD to Acme Supplies for invoice INV-H-001');
    // An agent's claim of approval is not evidence: extra arguments are dropped, and no money moved.
    ok<Ask>(
      await client.callTool(pay('INV-H-001', '500.00', { confirm: true, approved_by: 'admin@example.com' })),
    );
    expect(f.sandbox.ledger.charges()).toHaveLength(0);

    const pending = ok<{ approvals: { approval_id: string; status: string }[] }>(
      await client.callTool({ name: 'list_approvals', arguments: { status: 'pending' } }),
    );
    expect(pending.approvals.map((a) => a.approval_id)).toContain(ask.approval_id);

    // The human approves at their terminal through the built CLI, with their own token.
    const approved = await cliFor(f.t.url).json<{ approval_token: string }>(
      ['approvals', 'approve', ask.approval_id, '--as', 'jdoe@example.com'],
      { PAYGATE_USER_TOKEN: f.approver.token },
    );
    const token = approved.approval_token;
    expect(token).toMatch(/^apt_/);
    const done = ok(await client.callTool(pay('INV-H-001', '500.00', { approval_token: token })));
    expect(done).toMatchObject({
      success: true,
      status: 'paid',
      invoice_number: 'INV-H-001',
      amount: '500.00',
      amount_minor: 50000,
      currency: 'USD',
      payment_method: 'stripe',
      approved_by: 'jdoe@example.com',
    });
    expect(done.gateway_reference).toMatch(/^pi_/);
    expect(done.confirmation_number).toMatch(/^PG-/);
    expect(f.sandbox.ledger.charges(done.payment_id as string)).toHaveLength(1);

    const status = ok(
      await client.callTool({ name: 'get_payment_status', arguments: { payment: done.payment_id } }),
    );
    expect(status).toMatchObject({ status: 'paid', payment_id: done.payment_id });
    expect((status.history as { status: string }[]).map((h) => h.status)).toEqual(['processing', 'paid']);

    // The token pays once.
    expect(failed(await client.callTool(pay('INV-H-001', '500.00', { approval_token: token }))).code).toBe(
      'invoice_already_paid',
    );
  });

  it('refund and schedule go through the same protocol', async () => {
    const paid = ok(
      await client.callTool({ name: 'get_payment_status', arguments: { invoice: 'INV-H-001' } }),
    );
    const refund = {
      name: 'refund_payment',
      arguments: { payment: paid.payment_id, amount: '100.00', reason: 'damaged' },
    };
    const ask = ok<Ask>(await client.callTool(refund));
    expect(ask.status).toBe('approval_required');
    const token = await f.approveAs(f.approver, ask.approval_id);
    const done = ok(
      await client.callTool({ ...refund, arguments: { ...refund.arguments, approval_token: token } }),
    );
    expect(done).toMatchObject({ success: true, status: 'partially_refunded', refund_amount: '100.00' });

    const schedule = {
      name: 'schedule_payment',
      arguments: {
        invoice: 'INV-H-006',
        amount: '30.00',
        currency: 'USD',
        method: 'stripe',
        scheduled_date: '2099-01-01',
      },
    };
    expect(failed(await client.callTool(schedule)).code).toBe('invalid_date'); // more than a year ahead
    const tomorrow = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
    const sched = { ...schedule, arguments: { ...schedule.arguments, scheduled_date: tomorrow } };
    const sAsk = ok<Ask>(await client.callTool(sched));
    const sToken = await f.approveAs(f.approver, sAsk.approval_id);
    const scheduled = ok(
      await client.callTool({ ...sched, arguments: { ...sched.arguments, approval_token: sToken } }),
    );
    expect(scheduled).toMatchObject({ success: true, status: 'scheduled', scheduled_date: tomorrow });
    const cancelled = ok(
      await client.callTool({ name: 'cancel_scheduled_payment', arguments: { invoice: 'INV-H-006' } }),
    );
    expect(cancelled).toMatchObject({ success: true, status: 'cancelled' });
    expect(
      failed(await client.callTool({ name: 'cancel_scheduled_payment', arguments: { invoice: 'INV-H-006' } }))
        .code,
    ).toBe('not_cancellable');
  });

  it('get_payment_status given both payment and invoice is invalid_input, even where they agree', async () => {
    const paid = ok<{ payment_id: string }>(
      await client.callTool({ name: 'get_payment_status', arguments: { invoice: 'INV-H-001' } }),
    );
    // Disagreeing (INV-H-002 has no payment) and agreeing (the payment is INV-H-001's): the same refusal,
    // never the status of one of them with the other ignored.
    for (const invoice of ['INV-H-002', 'INV-H-001']) {
      const error = failed(
        await client.callTool({
          name: 'get_payment_status',
          arguments: { payment: paid.payment_id, invoice },
        }),
      );
      expect(error).toMatchObject({ code: 'invalid_input', retryable: false });
      expect(error.message).toMatch(/payment or invoice, not both/);
      expect(error.next_step).toMatch(/only payment .* or only invoice/);
    }
  });

  it('reads: invoices and payment methods of the tenant', async () => {
    const { invoices } = ok<{ invoices: { invoice_number: string; status: string; amount: string }[] }>(
      await client.callTool({ name: 'list_invoices', arguments: {} }),
    );
    expect(invoices.find((i) => i.invoice_number === 'INV-H-001')).toMatchObject({
      status: 'paid',
      amount: '500.00',
    });
    const { payment_methods } = ok<{ payment_methods: object[] }>(
      await client.callTool({ name: 'list_payment_methods', arguments: {} }),
    );
    expect(payment_methods).toEqual([
      expect.objectContaining({
        rail: 'stripe',
        provider: 'stripe',
        brand: 'visa',
        last4: '4242',
        label: 'Corporate Visa',
      }),
    ]);
    expect(JSON.stringify(payment_methods)).not.toContain('pm_card_visa');
    expect(failed(await client.callTool({ name: 'list_invoices', arguments: { status: 'nope' } })).code).toBe(
      'invalid_status',
    );
  });

  describe('URL elicitation', () => {
    function urlClient(
      onElicit: (req: ElicitRequest) => Promise<ElicitResult>,
      capabilities = { elicitation: { url: {} } },
    ) {
      return connect(f.agentKeySecret, capabilities).then((c) => {
        c.setRequestHandler(ElicitRequestSchema, onElicit);
        return c;
      });
    }

    it('opens the approval page, waits for the human, and completes without the agent holding a token', async () => {
      const seen: ElicitRequest['params'][] = [];
      const c = await urlClient(async (req) => {
        seen.push(req.params);
        const url = (req.params as { url: string }).url;
        // The human approves on their side after the client opened the page.
        setTimeout(() => void f.approveAs(f.approver, url.split('/').pop()!), 50);
        return { action: 'accept' };
      });
      const result = await c.callTool(pay('INV-H-002', '120.00'));
      const done = ok(result);
      expect(done).toMatchObject({
        success: true,
        status: 'paid',
        invoice_number: 'INV-H-002',
        approved_by: 'jdoe@example.com',
      });
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatchObject({ mode: 'url' });
      expect((seen[0] as { url: string }).url).toMatch(
        /^http:\/\/127\.0\.0\.1:8787\/approvals\/[0-9a-f-]{36}$/,
      );
      expect((seen[0] as { message: string }).message).toContain('120.00 USD to Acme Supplies');
      expect(JSON.stringify(result)).not.toMatch(/apt_/);
    });

    it('a rejection on the page is an isError result, and nothing is charged', async () => {
      const c = await urlClient(async (req) => {
        const id = (req.params as { url: string }).url.split('/').pop()!;
        setTimeout(() => void reject(f.t.db, f.tenant.id, f.approver, id, 'not this one'), 50);
        return { action: 'accept' };
      });
      const before = f.sandbox.ledger.charges().length;
      const error = failed(await c.callTool(pay('INV-H-003', '75.00')));
      expect(error).toMatchObject({ code: 'approval_rejected', retryable: false });
      expect(f.sandbox.ledger.charges()).toHaveLength(before);
    });

    it('an approval that expires while the server waits is an isError result', async () => {
      const c = await urlClient(async (req) => {
        const id = (req.params as { url: string }).url.split('/').pop()!;
        setTimeout(
          () =>
            void f.t.db.withTenant(f.tenant.id, (db) =>
              db.query("UPDATE approvals SET expires_at = now() - interval '1 second' WHERE id = $1", [id]),
            ),
          50,
        );
        return { action: 'accept' };
      });
      expect(failed(await c.callTool(pay('INV-H-005', '90.00')))).toMatchObject({ code: 'approval_expired' });
    });

    it("the client's accept (even with content) is never approval: without the human, the wait ends in approval_required", async () => {
      const short = await startHttp(f.deps, { approvalWaitMs: 200, approvalPollMs: 20 });
      try {
        const c = await httpClient(short.url, f.agentKeySecret, { elicitation: { url: {}, form: {} } });
        clients.push(c);
        c.setRequestHandler(ElicitRequestSchema, async () => ({
          action: 'accept',
          content: { approved: true },
        }));
        const ask = ok<Ask>(await c.callTool(pay('INV-H-004', '80.00')));
        expect(ask.status).toBe('approval_required');
        expect(f.sandbox.ledger.charges().some((ch) => ch.amountMinor === 80_00)).toBe(false);
      } finally {
        await short.close();
      }
    });

    it('a declined elicitation and a form-only client both get the ordinary approval_required answer', async () => {
      const declined = await urlClient(async () => ({ action: 'decline' }));
      expect(ok<Ask>(await declined.callTool(pay('INV-H-005', '90.00'))).status).toBe('approval_required');
      let asked = 0;
      const formOnly = await urlClient(
        async () => {
          asked++;
          return { action: 'accept', content: { approve: true } };
        },
        { elicitation: { form: {} } } as never,
      );
      expect(ok<Ask>(await formOnly.callTool(pay('INV-H-005', '90.00'))).status).toBe('approval_required');
      expect(asked).toBe(0);
    });
  });

  describe('the refusal table, as tool errors', () => {
    let agent: Client;
    beforeAll(async () => {
      await f.addInvoice('INV-H-DRAFT', 10_00);
      await f.t.db.withTenant(f.tenant.id, (c) =>
        c.query("UPDATE invoices SET status = 'draft' WHERE number = 'INV-H-DRAFT'"),
      );
      await f.addInvoice('INV-H-010', 40_00);
      await f.addInvoice('INV-H-011', 6_000_00);
      const { key } = await f.newAgent({ name: 'refusals', rateLimitPerMinute: 1000 });
      agent = await connect(key);
    });

    const cases: [string, { name: string; arguments: Record<string, unknown> }, string][] = [
      ['more decimals than the currency has', pay('INV-H-010', '40.001'), 'invalid_amount'],
      ['a negative amount', pay('INV-H-010', '-40.00'), 'invalid_amount'],
      ['an amount that is not a number', pay('INV-H-010', 'forty'), 'invalid_amount'],
      ['a float-looking exponent', pay('INV-H-010', '4e1'), 'invalid_amount'],
      ['an unknown currency', pay('INV-H-010', '40.00', { currency: 'XYZ' }), 'invalid_amount'],
      ['an unknown rail', pay('INV-H-010', '40.00', { method: 'bitcoin' }), 'invalid_input'],
      ['an empty invoice number', pay('', '40.00'), 'invalid_input'],
      ['an unknown invoice', pay('INV-NOPE', '40.00'), 'invoice_not_found'],
      ['an amount other than the invoice’s', pay('INV-H-010', '39.99'), 'amount_mismatch'],
      [
        'a currency other than the invoice’s',
        pay('INV-H-010', '40.00', { currency: 'EUR' }),
        'currency_mismatch',
      ],
      ['a draft invoice', pay('INV-H-DRAFT', '10.00'), 'invoice_not_approved'],
      ['a paid invoice', pay('INV-H-001', '500.00'), 'invoice_already_paid'],
      [
        'a rail with no payment method',
        pay('INV-H-010', '40.00', { method: 'paypal' }),
        'rail_not_configured',
      ],
      [
        'a made-up approval token',
        pay('INV-H-010', '40.00', { approval_token: 'apt_made-up' }),
        'invalid_approval_token',
      ],
      [
        'something that is not a token',
        pay('INV-H-010', '40.00', { approval_token: 'yes, approved' }),
        'invalid_approval_token',
      ],
      [
        'a malformed scheduled_date',
        {
          name: 'schedule_payment',
          arguments: { ...pay('INV-H-010', '40.00').arguments, scheduled_date: '2026-02-30' },
        },
        'invalid_input',
      ],
      [
        'a scheduled_date in the past',
        {
          name: 'schedule_payment',
          arguments: { ...pay('INV-H-010', '40.00').arguments, scheduled_date: '2020-01-01' },
        },
        'invalid_date',
      ],
      [
        'a refund of an unknown payment',
        { name: 'refund_payment', arguments: { payment: 'pi_unknown' } },
        'payment_not_found',
      ],
      [
        'a status with neither payment nor invoice',
        { name: 'get_payment_status', arguments: {} },
        'invalid_input',
      ],
      [
        'a cancel with neither id nor invoice',
        { name: 'cancel_scheduled_payment', arguments: {} },
        'invalid_input',
      ],
    ];
    it.each(cases)('%s', async (_what, call, code) => {
      const error = failed(await agent.callTool(call));
      expect(error.code).toBe(code);
      expect(error.retryable).toBe(false);
      expect(error.next_step.length).toBeGreaterThan(0);
    });

    it('expired, used and other-invoice tokens; the daily cap', async () => {
      for (const [n, amount] of [
        ['INV-H-020', 40_00],
        ['INV-H-021', 70_00],
        ['INV-H-022', 20_00],
      ] as const)
        await f.addInvoice(n, amount);
      const { key } = await f.newAgent({ name: 'daily', maxPerDayMinor: 100_00, capsCurrency: 'USD' });
      const daily = await connect(key);

      // Expired: approved, then its time ran out before the agent came back.
      const late = ok<Ask>(await daily.callTool(pay('INV-H-020', '40.00')));
      const lateToken = await f.approveAs(f.approver, late.approval_id);
      await f.t.db.withTenant(f.tenant.id, (db) =>
        db.query("UPDATE approvals SET expires_at = now() - interval '1 second' WHERE id = $1", [
          late.approval_id,
        ]),
      );
      expect(
        failed(await daily.callTool(pay('INV-H-020', '40.00', { approval_token: lateToken }))).code,
      ).toBe('approval_token_expired');

      // Used: a token consumed by a schedule cannot be presented again once the schedule is cancelled.
      const tomorrow = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
      const sched = {
        name: 'schedule_payment',
        arguments: { ...pay('INV-H-022', '20.00').arguments, scheduled_date: tomorrow },
      };
      const sAsk = ok<Ask>(await daily.callTool(sched));
      const sToken = await f.approveAs(f.approver, sAsk.approval_id);
      ok(await daily.callTool({ ...sched, arguments: { ...sched.arguments, approval_token: sToken } }));
      ok(await daily.callTool({ name: 'cancel_scheduled_payment', arguments: { invoice: 'INV-H-022' } }));
      expect(
        failed(await daily.callTool({ ...sched, arguments: { ...sched.arguments, approval_token: sToken } }))
          .code,
      ).toBe('approval_token_used');

      // Another invoice: a token for INV-H-020 does not pay INV-H-021.
      const ask = ok<Ask>(await daily.callTool(pay('INV-H-020', '40.00')));
      const token = await f.approveAs(f.approver, ask.approval_id);
      const other = ok<Ask>(await daily.callTool(pay('INV-H-021', '70.00')));
      expect(failed(await daily.callTool(pay('INV-H-021', '70.00', { approval_token: token }))).code).toBe(
        'approval_token_mismatch',
      );

      // Daily cap: 40.00 paid today, then 70.00 would make 110.00 over the 100.00 cap.
      ok(await daily.callTool(pay('INV-H-020', '40.00', { approval_token: token })));
      const otherToken = await f.approveAs(f.approver, other.approval_id);
      expect(
        failed(await daily.callTool(pay('INV-H-021', '70.00', { approval_token: otherToken }))).code,
      ).toBe('agent_daily_cap_exceeded');
    });

    it('a token approved for other parameters, an over-limit refund, a too-long reason, an agent cap', async () => {
      const ask = ok<Ask>(await agent.callTool(pay('INV-H-010', '40.00')));
      const token = await f.approveAs(f.approver, ask.approval_id);
      expect(
        failed(await agent.callTool(pay('INV-H-010', '40.00', { method: 'ach', approval_token: token })))
          .code,
      ).toBe('rail_not_configured');
      // Same invoice and amount, but scheduled instead of paid now: a different action.
      const tomorrow = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
      expect(
        failed(
          await agent.callTool({
            name: 'schedule_payment',
            arguments: {
              ...pay('INV-H-010', '40.00').arguments,
              scheduled_date: tomorrow,
              approval_token: token,
            },
          }),
        ).code,
      ).toBe('approval_token_mismatch');
      // Another agent cannot use this agent's token.
      expect(failed(await client.callTool(pay('INV-H-010', '40.00', { approval_token: token }))).code).toBe(
        'approval_token_other_agent',
      );
      const paid = ok(
        await client.callTool({ name: 'get_payment_status', arguments: { invoice: 'INV-H-001' } }),
      );
      expect(
        failed(
          await agent.callTool({
            name: 'refund_payment',
            arguments: { payment: paid.payment_id, amount: '450.00' },
          }),
        ).code,
      ).toBe('refund_exceeds_captured');
      expect(
        failed(
          await agent.callTool({
            name: 'refund_payment',
            arguments: { payment: paid.payment_id, reason: 'x'.repeat(501) },
          }),
        ).code,
      ).toBe('invalid_input');
      const { key } = await f.newAgent({ name: 'capped', maxPerPaymentMinor: 100_00, capsCurrency: 'USD' });
      const capped = await connect(key);
      expect(failed(await capped.callTool(pay('INV-H-011', '6000.00'))).code).toBe('agent_cap_exceeded');
    });
  });

  it('a session that goes quiet is closed; its id then answers 404', async () => {
    const quick = await startHttp(f.deps, { sessionIdleMs: 50 });
    try {
      const c = await httpClient(quick.url, f.agentKeySecret);
      ok(await c.callTool({ name: 'list_invoices', arguments: {} }));
      expect(quick.handler.sessionCount()).toBe(1);
      await expect.poll(() => quick.handler.sessionCount(), { timeout: 10_000 }).toBe(0);
      await expect(c.callTool({ name: 'list_invoices', arguments: {} })).rejects.toThrow(/404|not found/i);
      await c.close().catch(() => {});
    } finally {
      await quick.close();
    }
  });

  it('rate limiting per agent key is a retryable rate_limited error', async () => {
    const { key } = await f.newAgent({ name: 'runaway', rateLimitPerMinute: 2 });
    const runaway = await connect(key);
    ok(await runaway.callTool(pay('INV-H-005', '90.00')));
    ok(await runaway.callTool(pay('INV-H-005', '90.00')));
    const error = failed(await runaway.callTool(pay('INV-H-005', '90.00')));
    expect(error).toMatchObject({ code: 'rate_limited', retryable: true });
    // Reads are not rate-limited.
    ok(await runaway.callTool({ name: 'list_invoices', arguments: {} }));
  });

  it('an unexpected failure is a generic internal_error, never the message or a secret', () => {
    const result = errorResult(
      new Error(`connection to postgres://paygate:hunter2@db failed with key ${f.agentKeySecret}`),
      createLogger('silent'),
      'pay_invoice',
    );
    const error = failed(result);
    expect(error.code).toBe('internal_error');
    expect(JSON.stringify(result)).not.toContain('hunter2');
    expect(JSON.stringify(result)).not.toContain(f.agentKeySecret);
  });

  describe('HTTP authentication and DNS-rebinding protection', () => {
    const init = {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'curl', version: '1' } },
    };
    const post = (headers: Record<string, string>, body: unknown = init) =>
      fetch(http.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...headers,
        },
        body: JSON.stringify(body),
      });

    const statusWithHost = (host: string, headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const body = JSON.stringify(init);
        const req = request(
          http.url,
          {
            method: 'POST',
            headers: {
              host,
              'content-type': 'application/json',
              accept: 'application/json, text/event-stream',
              'content-length': Buffer.byteLength(body),
              ...headers,
            },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end(body);
      });

    it('401 without a key and with an unknown key', async () => {
      const none = await post({});
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(((await none.json()) as { error: { message: string } }).error.message).toContain('no agent key');
      expect((await post({ authorization: 'Bearer pgk_not-a-real-key' })).status).toBe(401);
      expect((await post({ authorization: `Basic ${f.agentKeySecret}` })).status).toBe(401);
    });

    it('403 for a disabled key, also in a session it opened before', async () => {
      const { agentKey, key } = await f.newAgent({ name: 'to-disable' });
      const c = await connect(key);
      ok(await c.callTool({ name: 'list_invoices', arguments: {} }));
      await f.t.db.withTenant(f.tenant.id, (db) =>
        db.query('UPDATE agent_keys SET disabled_at = now() WHERE id = $1', [agentKey.id]),
      );
      expect((await post({ authorization: `Bearer ${key}` })).status).toBe(403);
      await expect(c.callTool({ name: 'list_invoices', arguments: {} })).rejects.toThrow(/403|disabled/);
    });

    it('403 for a foreign Origin or Host; loopback and the public URL host pass', async () => {
      const auth = { authorization: `Bearer ${f.agentKeySecret}` };
      expect((await post({ ...auth, origin: 'https://evil.example' })).status).toBe(403);
      expect((await post({ ...auth, origin: 'null' })).status).toBe(403);
      // fetch does not let a caller set Host; a DNS-rebinding browser would, so node:http does here.
      expect(await statusWithHost('evil.example', auth)).toBe(403);
      expect(await statusWithHost('evil.example:8787', auth)).toBe(403);
      expect((await post({ ...auth, origin: 'http://localhost:3000' })).status).toBe(200);
      expect(await statusWithHost(`localhost:${new URL(http.url).port}`, auth)).toBe(200);
      const publicHost = await startHttp({ ...f.deps, publicUrl: 'https://pay.example.com' });
      try {
        const res = await fetch(publicHost.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            origin: 'https://pay.example.com',
            ...auth,
          },
          body: JSON.stringify(init),
        });
        expect(res.status).toBe(200);
      } finally {
        await publicHost.close();
      }
    });

    it('a session belongs to the key that opened it', async () => {
      const res = await post({ authorization: `Bearer ${f.agentKeySecret}` });
      const sessionId = res.headers.get('mcp-session-id')!;
      expect(sessionId).toBeTruthy();
      const { key } = await f.newAgent({ name: 'intruder' });
      const hijack = await post(
        { authorization: `Bearer ${key}`, 'mcp-session-id': sessionId },
        { jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} },
      );
      expect(hijack.status).toBe(403);
      const unknown = await post(
        { authorization: `Bearer ${key}`, 'mcp-session-id': 'no-such-session' },
        { jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} },
      );
      expect(unknown.status).toBe(404);
    });
  });

  it("a second tenant's agent can neither see nor touch the first tenant's invoices, payments or approvals", async () => {
    const other = await createFixture({ slug: 'globex', t: f.t, sandbox: f.sandbox });
    await other.addMethod({ rail: 'stripe', token: 'pm_card_visa' });
    await other.addInvoice('INV-G-001', 10_00);
    const globex = await connect(other.agentKeySecret);
    const { invoices } = ok<{ invoices: { invoice_number: string }[] }>(
      await globex.callTool({ name: 'list_invoices', arguments: {} }),
    );
    expect(invoices.map((i) => i.invoice_number)).toEqual(['INV-G-001']);
    const acmePaid = ok(
      await client.callTool({ name: 'get_payment_status', arguments: { invoice: 'INV-H-001' } }),
    );
    expect(failed(await globex.callTool(pay('INV-H-010', '40.00'))).code).toBe('invoice_not_found');
    expect(
      failed(
        await globex.callTool({ name: 'get_payment_status', arguments: { payment: acmePaid.payment_id } }),
      ).code,
    ).toBe('payment_not_found');
    expect(
      failed(
        await globex.callTool({
          name: 'get_payment_status',
          arguments: { payment: acmePaid.gateway_reference },
        }),
      ).code,
    ).toBe('payment_not_found');
    expect(
      failed(await globex.callTool({ name: 'refund_payment', arguments: { payment: acmePaid.payment_id } }))
        .code,
    ).toBe('payment_not_found');
    expect(
      failed(await globex.callTool({ name: 'cancel_scheduled_payment', arguments: { invoice: 'INV-H-006' } }))
        .code,
    ).toBe('scheduled_payment_not_found');
    const { approvals } = ok<{ approvals: unknown[] }>(
      await globex.callTool({ name: 'list_approvals', arguments: {} }),
    );
    expect(approvals).toEqual([]);
    // An acme token presented by globex's agent for globex's own invoice is unknown in globex.
    const ask = ok<Ask>(await client.callTool(pay('INV-H-010', '40.00')));
    const acmeToken = await f.approveAs(f.approver, ask.approval_id);
    expect(
      failed(await globex.callTool({ ...pay('INV-G-001', '10.00', { approval_token: acmeToken }) })).code,
    ).toBe('invalid_approval_token');
  });
});
