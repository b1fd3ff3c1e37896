import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApprovalRequired, payInvoice } from '../src/payments/pay.js';
import { cliFor } from './support/cli.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('paygate approvals on the command line', () => {
  let f: Fixture;
  let cli: ReturnType<typeof cliFor>;
  let approvalId: string;
  const input = { invoice: 'INV-2025-001', amount: '500.00', currency: 'USD', method: 'stripe' };

  beforeAll(async () => {
    f = await createFixture();
    cli = cliFor(f.t.url);
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa' });
    await f.addInvoice('INV-2025-001', 500_00);
    approvalId = ((await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired)
      .approval_id;
  });
  afterAll(async () => f.close());

  it('lists pending approvals for a human of the tenant', async () => {
    const list = await cli.json<{ approval_id: string; status: string; amount: string }[]>(
      ['approvals', 'list', '--tenant', 'acme', '--status', 'pending'],
      {
        PAYGATE_USER_TOKEN: f.approver.token,
      },
    );
    expect(list).toEqual([
      expect.objectContaining({
        approval_id: approvalId,
        status: 'pending',
        amount: '500.00',
        currency: 'USD',
      }),
    ]);
  });

  it('--as alone is refused: an agent with a shell knows every email address', async () => {
    const r = await cli.cli(['approvals', 'approve', approvalId, '--as', 'admin@example.com']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--as admin@example.com is not enough/);
  });

  it("someone else's token with --as is refused", async () => {
    const r = await cli.cli(['approvals', 'approve', approvalId, '--as', 'admin@example.com'], {
      PAYGATE_USER_TOKEN: f.approver.token,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not admin@example.com's/);
  });

  it('an agent key is not a human token', async () => {
    const r = await cli.cli(['approvals', 'approve', approvalId, '--as', 'admin@example.com'], {
      PAYGATE_USER_TOKEN: f.agentKeySecret,
    });
    expect(r.code).toBe(1);
  });

  it('the human with their own token approves; the token is printed once and pays', async () => {
    const out = await cli.json<{ approval_token: string; status: string }>(
      ['approvals', 'approve', approvalId, '--as', 'admin@example.com'],
      {
        PAYGATE_USER_TOKEN: f.admin.token,
      },
    );
    expect(out.status).toBe('approved');
    expect(out.approval_token).toMatch(/^apt_/);
    const paid = await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { ...input, approval_token: out.approval_token },
    );
    expect(paid).toMatchObject({ status: 'paid', approved_by: 'admin@example.com' });
    const again = await cli.cli(['approvals', 'approve', approvalId, '--as', 'admin@example.com'], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(again.code).toBe(1);
    const payments = await cli.json<{ invoice_number: string; status: string }[]>(
      ['payments', 'list', '--tenant', 'acme'],
      { PAYGATE_USER_TOKEN: f.approver.token },
    );
    expect(payments).toEqual([expect.objectContaining({ invoice_number: 'INV-2025-001', status: 'paid' })]);
    const alerts = await cli.cli(['alerts', 'list', '--tenant', 'acme'], {
      PAYGATE_USER_TOKEN: f.approver.token,
    });
    expect(alerts.code).toBe(0);
  });
});
