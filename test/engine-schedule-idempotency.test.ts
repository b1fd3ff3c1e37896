/**
 * idempotency_key on schedule_payment once its phase 1 committed (the schedule exists, the approval
 * token is consumed): the key's answer is that schedule, whatever happened after. Here the database
 * refuses to record the key's answer: the retry with the same key and token gets the schedule, as the
 * first call would have answered, never a refusal and never a second schedule. A failure before phase 1
 * (an approval request, a refused token) still frees the key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addDays, todayIn } from '../src/payments/calendar.js';
import { type ApprovalRequired, schedulePayment } from '../src/payments/pay.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('schedule_payment with an idempotency_key after its phase 1', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture({ slug: 'schedule-idem' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
  });
  afterAll(async () => {
    await f?.close();
  });

  const schedulesOf = async (invoice: string) =>
    (
      await f.t.db.withSystem((c) =>
        c.query<{ id: string; status: string; approval_id: string }>(
          `SELECT s.id, s.status, s.approval_id FROM scheduled_payments s JOIN invoices i ON i.id = s.invoice_id
            WHERE i.number = $1`,
          [invoice],
        ),
      )
    ).rows;

  it('the key cannot be answered after the schedule committed: the retry with the same key and token answers with that schedule', async () => {
    await f.addInvoice('INV-SI-1', 75_00);
    const date = addDays(todayIn(f.tenant.timezone), 5);
    const caller = { agentKey: f.agentKey };
    const input = {
      invoice: 'INV-SI-1',
      amount: '75.00',
      currency: 'USD',
      method: 'stripe',
      scheduled_date: date,
      idempotency_key: 'schedule-k-1',
    };
    // Failures before phase 1 free the key: the approval request, then a token that is no approval's.
    const ask = (await schedulePayment(f.deps, caller, input)) as ApprovalRequired;
    expect(ask.status).toBe('approval_required');
    await expect(
      schedulePayment(f.deps, caller, { ...input, approval_token: `apt_${'x'.repeat(43)}` }),
    ).rejects.toMatchObject({ code: 'invalid_approval_token' });
    const token = await f.approveAs(f.admin, ask.approval_id);
    const keyed = { ...input, approval_token: token };

    // The database refuses to complete any key (an outage, a full disk) while the call runs.
    await f.t.db.withSystem((c) =>
      c.query(`
        CREATE FUNCTION test_refuse_key_answer() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the database refused the key''s answer'; END $$;
        CREATE TRIGGER test_refuse_key_answer BEFORE UPDATE ON idempotency_keys FOR EACH ROW
          WHEN (NEW.status = 'completed') EXECUTE FUNCTION test_refuse_key_answer();`),
    );
    try {
      await expect(schedulePayment(f.deps, caller, keyed)).rejects.toThrow(/refused the key's answer/);
    } finally {
      await f.t.db.withSystem((c) =>
        c.query(
          'DROP TRIGGER test_refuse_key_answer ON idempotency_keys; DROP FUNCTION test_refuse_key_answer()',
        ),
      );
    }
    const [made] = await schedulesOf('INV-SI-1');
    expect(made).toMatchObject({ status: 'scheduled', approval_id: ask.approval_id });

    // The agent retries, same key, same token, at once: the schedule it made, as the first call would
    // have answered (nothing was left to wait for), each time.
    const answer = {
      success: true,
      status: 'scheduled',
      payment_id: null,
      scheduled_payment_id: made!.id,
      scheduled_date: date,
      invoice_id: expect.any(String),
      invoice_number: 'INV-SI-1',
      payee: 'Acme Supplies',
      amount: '75.00',
      amount_minor: 75_00,
      currency: 'USD',
      payment_method: 'stripe',
      provider: 'stripe',
      approved_by: 'admin@example.com',
      approvers: ['admin@example.com'],
      gateway_reference: null,
      confirmation_number: null,
      paid_at: null,
    };
    expect(await schedulePayment(f.deps, caller, keyed)).toEqual(answer);
    // Long after (past the 10 minutes that make a payment's unanswered key "interrupted"): the same.
    await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query(
        "UPDATE idempotency_keys SET created_at = now() - interval '20 minutes' WHERE tenant_id = $1 AND key = $2",
        [f.tenant.id, input.idempotency_key],
      ),
    );
    expect(await schedulePayment(f.deps, caller, keyed)).toEqual(answer);
    expect(await schedulePayment(f.deps, caller, keyed)).toEqual(answer);
    expect(await schedulePayment(f.deps, caller, keyed)).toEqual(answer);

    // Nothing else happened: one schedule, and only the made-up token was ever refused.
    expect(await schedulesOf('INV-SI-1')).toHaveLength(1);
    const refused = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ content: string }>("SELECT content FROM audit_log WHERE action = 'approval_token.refused'"),
    );
    expect(refused.rows).toHaveLength(1);
    expect(refused.rows[0]!.content).toContain('invalid_approval_token');

    // The same fields as a schedule_payment call that answered in one go.
    await f.addInvoice('INV-SI-2', 12_00);
    const plain = { ...input, invoice: 'INV-SI-2', amount: '12.00', idempotency_key: 'schedule-k-2' };
    const askPlain = (await schedulePayment(f.deps, caller, plain)) as ApprovalRequired;
    const tokenPlain = await f.approveAs(f.admin, askPlain.approval_id);
    const answered = await schedulePayment(f.deps, caller, { ...plain, approval_token: tokenPlain });
    expect(Object.keys(answered).sort()).toEqual(Object.keys(answer).sort());
  });
});
