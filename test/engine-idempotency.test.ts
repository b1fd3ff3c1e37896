/**
 * idempotency_key on pay_invoice — same key with other parameters, the same key used by another
 * agent and another tenant, a replay without the token after the payment, and two concurrent calls with
 * one key and one token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApprovalRequired, type PaymentConfirmation, payInvoice } from '../src/payments/pay.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('Idempotency keys', () => {
  let a: Fixture;
  let b: Fixture;
  beforeAll(async () => {
    a = await createFixture({ slug: 'idem-a' });
    b = await createFixture({ slug: 'idem-b', t: a.t, sandbox: a.sandbox });
    for (const f of [a, b])
      await f.addMethod({
        rail: 'stripe',
        token: 'pm_card_visa',
        label: 'Visa',
        brand: 'visa',
        last4: '4242',
      });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  const charges = (f: Fixture, invoice: string) =>
    f.t.db
      .withTenant(f.tenant.id, (c) =>
        c.query<{ id: string }>(
          'SELECT p.id FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = $1',
          [invoice],
        ),
      )
      .then((r) => r.rows.flatMap((p) => f.sandbox.ledger.charges(p.id)));

  async function paid(
    f: Fixture,
    agentKey: Fixture['agentKey'],
    invoice: string,
    amount: string,
    key: string,
  ) {
    const input = { invoice, amount, currency: 'USD', method: 'stripe', idempotency_key: key };
    const ask = (await payInvoice(f.deps, { agentKey }, input)) as ApprovalRequired;
    expect(ask.status).toBe('approval_required');
    const token = await f.approveAs(f.admin, ask.approval_id);
    return {
      input,
      token,
      done: (await payInvoice(
        f.deps,
        { agentKey },
        { ...input, approval_token: token },
      )) as PaymentConfirmation,
    };
  }

  it('same key, other invoice: refused, nothing charged for the second invoice', async () => {
    await a.addInvoice('INV-I-1', 11_00);
    await a.addInvoice('INV-I-2', 12_00);
    const first = await paid(a, a.agentKey, 'INV-I-1', '11.00', 'key-1');
    expect(first.done.status).toBe('paid');
    await expect(
      payInvoice(
        a.deps,
        { agentKey: a.agentKey },
        { invoice: 'INV-I-2', amount: '12.00', currency: 'USD', method: 'stripe', idempotency_key: 'key-1' },
      ),
    ).rejects.toMatchObject({ code: 'idempotency_key_reused' });
    expect(await charges(a, 'INV-I-2')).toHaveLength(0);
  });

  it('replay without the token after the payment: the same answer, no second approval, no second charge', async () => {
    const replay = (await payInvoice(
      a.deps,
      { agentKey: a.agentKey },
      {
        invoice: 'INV-I-1',
        amount: '11.00',
        currency: 'USD',
        method: 'stripe',
        idempotency_key: 'key-1',
      },
    )) as PaymentConfirmation;
    expect(replay.status).toBe('paid');
    expect(await charges(a, 'INV-I-1')).toHaveLength(1);
  });

  it('the same key used by another agent of the tenant and by another tenant: each its own request, each paid once', async () => {
    await a.addInvoice('INV-I-3', 13_00);
    await b.addInvoice('INV-I-1', 14_00);
    const other = await a.newAgent({ name: 'other' });
    const x = await paid(a, other.agentKey, 'INV-I-3', '13.00', 'key-1');
    const y = await paid(b, b.agentKey, 'INV-I-1', '14.00', 'key-1');
    expect([x.done.status, y.done.status]).toEqual(['paid', 'paid']);
    expect(await charges(a, 'INV-I-3')).toHaveLength(1);
    expect(await charges(b, 'INV-I-1')).toHaveLength(1);
    expect(await charges(a, 'INV-I-1')).toHaveLength(1);
  });

  it('two concurrent calls with one key and one token: one payment, one charge', async () => {
    await a.addInvoice('INV-I-4', 15_00);
    const input = {
      invoice: 'INV-I-4',
      amount: '15.00',
      currency: 'USD',
      method: 'stripe',
      idempotency_key: 'key-4',
    };
    const ask = (await payInvoice(a.deps, { agentKey: a.agentKey }, input)) as ApprovalRequired;
    const token = await a.approveAs(a.admin, ask.approval_id);
    const results = await Promise.allSettled(
      [1, 2, 3].map(() => payInvoice(a.deps, { agentKey: a.agentKey }, { ...input, approval_token: token })),
    );
    expect(results.filter((r) => r.status === 'fulfilled').length).toBeGreaterThanOrEqual(1);
    expect(await charges(a, 'INV-I-4')).toHaveLength(1);
  });
});
