/**
 * pass 5: URL elicitation over real Streamable HTTP with the SDK's real Client: two waits on one
 * approval, a client that cancels mid-wait, a client that answers garbage, progress while waiting.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  type ElicitRequest,
  ElicitRequestSchema,
  type ElicitResult,
} from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixture, type Fixture } from '../support/fixture.js';
import { type HttpServer, httpClient, ok, startHttp } from './helpers.js';

const pay = (invoice: string, amount: string) => ({
  name: 'pay_invoice',
  arguments: { invoice, amount, currency: 'USD', method: 'stripe' },
});

async function paymentsFor(f: Fixture, invoice: string) {
  const { rows } = await f.t.db.withSystem((c) =>
    c.query<{ id: string; status: string }>(
      'SELECT p.id, p.status FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = $1',
      [invoice],
    ),
  );
  return rows;
}

describe('URL elicitation under races and odd clients', () => {
  let f: Fixture;
  let http: HttpServer;
  const clients: Client[] = [];

  async function urlClient(onElicit: (req: ElicitRequest) => Promise<ElicitResult>) {
    const c = await httpClient(http.url, f.agentKeySecret, { elicitation: { url: {} } });
    c.setRequestHandler(ElicitRequestSchema, onElicit);
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    f = await createFixture({ slug: 'elicit-test' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
    for (const [n, amount] of [
      ['INV-E-001', 111_00],
      ['INV-E-002', 222_00],
      ['INV-E-003', 333_00],
      ['INV-E-004', 444_00],
    ] as const)
      await f.addInvoice(n, amount);
    http = await startHttp(f.deps, { approvalWaitMs: 20_000, approvalPollMs: 20 });
  });
  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await http?.close();
    await f?.close();
  });

  it('two concurrent calls waiting on the same approval: one payment, one charge, the other call refused', async () => {
    const ids: string[] = [];
    let release!: () => void;
    const bothAsked = new Promise<void>((r) => {
      release = r;
    });
    const onElicit = async (req: ElicitRequest) => {
      ids.push((req.params as { url: string }).url.split('/').pop()!);
      if (ids.length === 2) release();
      return { action: 'accept' } as ElicitResult;
    };
    const a = await urlClient(onElicit);
    const b = await urlClient(onElicit);
    const before = f.sandbox.ledger.charges().length;
    const calls = [a.callTool(pay('INV-E-001', '111.00')), b.callTool(pay('INV-E-001', '111.00'))];
    await bothAsked;
    expect(ids[0]).toBe(ids[1]); // the identical request reuses the pending approval
    await f.approveAs(f.approver, ids[0]!);
    const results = await Promise.all(calls);
    const successes = results.filter((r) => !r.isError);
    expect(successes).toHaveLength(1);
    expect(f.sandbox.ledger.charges().length - before).toBe(1);
    expect((await paymentsFor(f, 'INV-E-001')).length).toBe(1);
  });

  it('a client that cancels mid-wait gets no payment, even when the human approves afterwards', async () => {
    let id = '';
    let asked!: () => void;
    const wasAsked = new Promise<void>((r) => {
      asked = r;
    });
    const c = await urlClient(async (req) => {
      id = (req.params as { url: string }).url.split('/').pop()!;
      asked();
      return { action: 'accept' };
    });
    const controller = new AbortController();
    const before = f.sandbox.ledger.charges().length;
    const call = c.callTool(pay('INV-E-002', '222.00'), undefined, { signal: controller.signal });
    await wasAsked;
    controller.abort();
    await expect(call).rejects.toThrow();
    await f.approveAs(f.approver, id);
    // Give the server several poll intervals to (wrongly) act on the approval.
    await new Promise((r) => setTimeout(r, 300));
    expect(f.sandbox.ledger.charges().length).toBe(before);
    expect(await paymentsFor(f, 'INV-E-002')).toEqual([]);
  });

  it('a client declaring elicitation but answering garbage gets the ordinary approval_required answer', async () => {
    const c = await urlClient(async () => ({ action: 'approve-please', content: 42 }) as never);
    const ask = ok<{ status: string }>(await c.callTool(pay('INV-E-003', '333.00')));
    expect(ask.status).toBe('approval_required');
    expect(await paymentsFor(f, 'INV-E-003')).toEqual([]);
  });

  it('progress notifications arrive while the server waits for the human', async () => {
    let id = '';
    const c = await urlClient(async (req) => {
      id = (req.params as { url: string }).url.split('/').pop()!;
      return { action: 'accept' };
    });
    const progress: number[] = [];
    const call = c.callTool(pay('INV-E-004', '444.00'), undefined, {
      onprogress: (p) => {
        progress.push(p.progress);
        if (progress.length === 3) void f.approveAs(f.approver, id);
      },
      resetTimeoutOnProgress: true,
    });
    const done = ok<{ status: string }>(await call);
    expect(done.status).toBe('paid');
    expect(progress.length).toBeGreaterThanOrEqual(3);
    // Monotonic, as the protocol requires.
    for (let i = 1; i < progress.length; i++) expect(progress[i]!).toBeGreaterThan(progress[i - 1]!);
  });
});
