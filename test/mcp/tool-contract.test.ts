/**
 * The tools' contract as a strict MCP client sees it: every result (success and every error we can
 * provoke) validates against the outputSchema from tools/list (ajv, on top of the SDK client's own
 * check), text equals structuredContent, errors carry {error:{code,message,retryable,next_step}},
 * annotations are honest, and amounts use the currency's exponent.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixture, type Fixture } from '../support/fixture.js';
import { type HttpServer, httpClient, startHttp } from './helpers.js';

describe('MCP tool contract for strict clients', () => {
  let f: Fixture;
  let http: HttpServer;
  let client: Client;
  let tools: Tool[];
  const validators = new Map<string, (v: unknown) => boolean>();
  const ajv = new Ajv({ strict: false, allErrors: true });
  // ajv-formats is CommonJS with a default export; under NodeNext ESM its callable is `.default`.
  const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (
    a: Ajv,
  ) => Ajv;
  addFormats(ajv);
  const problems: string[] = [];

  async function call(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
    const r = (await client.callTool({ name, arguments: args })) as CallToolResult;
    const label = `${name}(${JSON.stringify(args)})`;
    if (r.structuredContent === undefined) {
      problems.push(`${label}: no structuredContent (isError=${r.isError}): ${JSON.stringify(r.content)}`);
      return r;
    }
    const validate = validators.get(name)!;
    if (!validate(r.structuredContent))
      problems.push(
        `${label}: structuredContent fails outputSchema: ${ajv.errorsText((validate as ValidateFunction).errors)} :: ${JSON.stringify(r.structuredContent)}`,
      );
    const text = (r.content[0] as { text?: string })?.text;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text ?? '');
    } catch {
      parsed = Symbol('unparseable');
    }
    if (JSON.stringify(parsed) !== JSON.stringify(r.structuredContent))
      problems.push(`${label}: text differs from structuredContent`);
    if (r.isError) {
      const e = (r.structuredContent as { error?: Record<string, unknown> }).error;
      if (
        !e ||
        typeof e.code !== 'string' ||
        typeof e.message !== 'string' ||
        typeof e.retryable !== 'boolean' ||
        typeof e.next_step !== 'string'
      )
        problems.push(`${label}: isError without a full {error}`);
    }
    return r;
  }

  // biome-ignore lint/suspicious/noExplicitAny: the assertions below read whatever shape each tool answers
  const sc = <T = Record<string, any>>(r: CallToolResult) => r.structuredContent as T;

  beforeAll(async () => {
    f = await createFixture({ slug: 'contract-test' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_success', label: 'PayPal' });
    await f.addInvoice('INV-C-USD', 500_00);
    await f.addInvoice('INV-C-JPY', 1500, 'JPY');
    await f.addInvoice('INV-C-KWD', 1230, 'KWD');
    await f.addInvoice('INV-C-SCH', 42_00);
    http = await startHttp(f.deps, { approvalWaitMs: 5_000, approvalPollMs: 20 });
    client = await httpClient(http.url, f.agentKeySecret);
    tools = (await client.listTools()).tools;
    for (const t of tools) {
      const schema = { ...(t.outputSchema as object) } as Record<string, unknown>;
      delete schema.$schema;
      validators.set(t.name, ajv.compile(schema));
    }
  });
  afterAll(async () => {
    await client?.close().catch(() => {});
    await http?.close();
    await f?.close();
  });

  it('annotations as DESIGN.md says', () => {
    const byName = Object.fromEntries(tools.map((t) => [t.name, t.annotations]));
    for (const n of ['pay_invoice', 'schedule_payment', 'refund_payment'])
      expect(byName[n]).toMatchObject({
        destructiveHint: true,
        idempotentHint: false,
        openWorldHint: true,
        readOnlyHint: false,
      });
    for (const n of ['list_invoices', 'list_approvals', 'list_payment_methods', 'get_payment_status'])
      expect(byName[n]?.readOnlyHint).toBe(true);
  });

  it('reads and their errors validate', async () => {
    expect(sc(await call('list_invoices', {})).invoices.length).toBe(4);
    expect((await call('list_invoices', { status: 'bogus' })).isError).toBe(true);
    await call('list_payment_methods', {});
    await call('list_approvals', {});
    expect((await call('list_approvals', { status: 'nope' })).isError).toBe(true);
    expect((await call('get_payment_status', {})).isError).toBe(true);
    expect((await call('get_payment_status', { payment: 'pay_nope' })).isError).toBe(true);
    expect((await call('get_payment_status', { invoice: 'INV-NOPE' })).isError).toBe(true);
    expect(
      (await call('get_payment_status', { payment: '00000000-0000-0000-0000-000000000000', invoice: 'X' }))
        .isError,
    ).toBe(true);
    expect((await call('cancel_scheduled_payment', {})).isError).toBe(true);
    expect((await call('cancel_scheduled_payment', { invoice: 'INV-NOPE' })).isError).toBe(true);
    expect(problems).toEqual([]);
  });

  it('money-moving refusals (engine-checked) validate', async () => {
    const base = { invoice: 'INV-C-USD', amount: '500.00', currency: 'USD', method: 'stripe' };
    for (const bad of [
      { ...base, amount: '500.001' },
      { ...base, amount: '499.99' },
      { ...base, amount: '-500.00' },
      { ...base, amount: '5e2' },
      { ...base, currency: 'usd' },
      { ...base, currency: 'XXX' },
      { ...base, method: 'bitcoin' },
      { ...base, method: 'ach' },
      { ...base, invoice: 'INV-NOPE' },
      { ...base, approval_token: 'apt_forged' },
      { ...base, approval_token: 'not-a-token' },
      { ...base, idempotency_key: 'k'.repeat(201) },
    ])
      expect((await call('pay_invoice', bad)).isError, JSON.stringify(bad)).toBe(true);
    for (const bad of [
      {
        invoice: 'INV-C-SCH',
        amount: '42.00',
        currency: 'USD',
        method: 'stripe',
        scheduled_date: '2025-02-30',
      },
      {
        invoice: 'INV-C-SCH',
        amount: '42.00',
        currency: 'USD',
        method: 'stripe',
        scheduled_date: '2001-01-01',
      },
      {
        invoice: 'INV-C-SCH',
        amount: '42.00',
        currency: 'USD',
        method: 'stripe',
        scheduled_date: 'tomorrow',
      },
    ])
      expect((await call('schedule_payment', bad)).isError).toBe(true);
    expect((await call('refund_payment', { payment: 'pi_nope' })).isError).toBe(true);
    expect((await call('refund_payment', { payment: 'x', amount: '1.001' })).isError).toBe(true);
    expect(problems).toEqual([]);
  });

  it('wrong argument types (what agents most often send) come back as the documented {error} object', async () => {
    problems.length = 0;
    const r1 = await call('pay_invoice', {
      invoice: 'INV-C-USD',
      amount: 500,
      currency: 'USD',
      method: 'stripe',
    });
    const r2 = await call('pay_invoice', { invoice: 'INV-C-USD', currency: 'USD', method: 'stripe' });
    const r3 = await call('get_payment_status', { invoice: 'INV-C-USD', refresh: 'yes' });
    expect([r1.isError, r2.isError, r3.isError]).toEqual([true, true, true]);
    expect(problems).toEqual([]);
  });

  it('full flows in USD, JPY and KWD: every answer validates, amounts use the exponent', async () => {
    problems.length = 0;
    const flows = [
      { invoice: 'INV-C-USD', amount: '500.00', currency: 'USD', method: 'stripe', minor: 50000 },
      { invoice: 'INV-C-JPY', amount: '1500', currency: 'JPY', method: 'stripe', minor: 1500 },
      { invoice: 'INV-C-KWD', amount: '1.230', currency: 'KWD', method: 'stripe', minor: 1230 },
    ];
    const listed = sc(await call('list_invoices', {})).invoices as {
      invoice_number: string;
      amount: string;
    }[];
    expect(Object.fromEntries(listed.map((i) => [i.invoice_number, i.amount]))).toMatchObject({
      'INV-C-USD': '500.00',
      'INV-C-JPY': '1500',
      'INV-C-KWD': '1.230',
    });
    for (const fl of flows) {
      const args = { invoice: fl.invoice, amount: fl.amount, currency: fl.currency, method: fl.method };
      const ask = sc(await call('pay_invoice', args));
      expect(ask.status, JSON.stringify(ask)).toBe('approval_required');
      expect(ask.summary).toContain(`${fl.amount} ${fl.currency}`);
      const approvals = sc(await call('list_approvals', { status: 'pending' })).approvals as {
        approval_id: string;
        amount: string;
      }[];
      expect(approvals.find((a) => a.approval_id === ask.approval_id)?.amount).toBe(fl.amount);
      const token = await f.approveAs(f.admin, ask.approval_id);
      const done = await call('pay_invoice', { ...args, approval_token: token });
      expect(done.isError, JSON.stringify(done.structuredContent)).toBeFalsy();
      expect(sc(done)).toMatchObject({
        success: true,
        amount: fl.amount,
        amount_minor: fl.minor,
        currency: fl.currency,
      });
      // Paying again is refused, and the refusal validates.
      expect((await call('pay_invoice', args)).isError).toBe(true);
      expect((await call('pay_invoice', { ...args, approval_token: token })).isError).toBe(true);
      const status = sc(await call('get_payment_status', { payment: sc(done).payment_id }));
      expect(status.amount).toBe(fl.amount);
      await call('get_payment_status', { invoice: fl.invoice, refresh: true });
      // A partial refund: approval, token, done; then an over-refund is refused.
      const part = fl.currency === 'JPY' ? '500' : fl.currency === 'KWD' ? '0.230' : '100.00';
      const rask = sc(
        await call('refund_payment', { payment: sc(done).payment_id, amount: part, reason: 'dup' }),
      );
      expect(rask.status).toBe('approval_required');
      expect(rask.summary).toContain(`${part} ${fl.currency}`);
      const rtoken = await f.approveAs(f.admin, rask.approval_id);
      const refunded = await call('refund_payment', {
        payment: sc(done).payment_id,
        amount: part,
        reason: 'dup',
        approval_token: rtoken,
      });
      expect(refunded.isError, JSON.stringify(refunded.structuredContent)).toBeFalsy();
      expect(sc(refunded).refund_amount ?? sc(refunded).amount).toBe(part);
      const tooMuch = fl.currency === 'JPY' ? '1500' : fl.currency === 'KWD' ? '1.230' : '500.00';
      expect((await call('refund_payment', { payment: sc(done).payment_id, amount: tooMuch })).isError).toBe(
        true,
      );
      const after = sc(await call('get_payment_status', { payment: sc(done).payment_id }));
      expect(after.refunds?.length).toBe(1);
    }
    expect(problems).toEqual([]);
  });

  it('schedule and cancel validate', async () => {
    problems.length = 0;
    const date = new Date(Date.now() + 5 * 86400_000).toISOString().slice(0, 10);
    const args = {
      invoice: 'INV-C-SCH',
      amount: '42.00',
      currency: 'USD',
      method: 'stripe',
      scheduled_date: date,
    };
    const ask = sc(await call('schedule_payment', args));
    const token = await f.approveAs(f.admin, ask.approval_id);
    const done = sc(await call('schedule_payment', { ...args, approval_token: token }));
    expect(done).toMatchObject({ success: true, status: 'scheduled', scheduled_date: date });
    await call('get_payment_status', { invoice: 'INV-C-SCH' });
    const cancelled = await call('cancel_scheduled_payment', { invoice: 'INV-C-SCH' });
    expect(cancelled.isError).toBeFalsy();
    expect((await call('cancel_scheduled_payment', { invoice: 'INV-C-SCH' })).isError).toBe(true);
    await call('get_payment_status', { invoice: 'INV-C-SCH' });
    await call('list_approvals', {});
    expect(problems).toEqual([]);
  });
});
