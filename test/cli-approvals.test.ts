import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consumeApprovalToken } from '../src/approvals/approvals.js';
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

  it('an approved request the agent has not used yet can be revoked: its token stops working, nothing moves', async () => {
    await f.addInvoice('INV-2025-002', 42_00);
    const call = { ...input, invoice: 'INV-2025-002', amount: '42.00' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, call)) as ApprovalRequired;
    const approved = await cli.json<{ approval_token: string }>(
      ['approvals', 'approve', ask.approval_id, '--as', 'jdoe@example.com'],
      { PAYGATE_USER_TOKEN: f.approver.token },
    );
    // Another approver (here the admin) may take it back, not only the one who approved.
    const revoked = await cli.json<{ status: string }>(
      ['approvals', 'reject', ask.approval_id, '--as', 'admin@example.com', '--reason', 'duplicate invoice'],
      { PAYGATE_USER_TOKEN: f.admin.token },
    );
    expect(revoked.status).toBe('rejected');

    const charges = f.sandbox.ledger.charges().length;
    // The token itself is gone (its hash was cleared)...
    await expect(
      payInvoice(f.deps, { agentKey: f.agentKey }, { ...call, approval_token: approved.approval_token }),
    ).rejects.toMatchObject({ code: 'invalid_approval_token' });
    // ...and the approval, presented by id as URL elicitation does, is no longer approved.
    await expect(
      f.t.db.withTenant(f.tenant.id, (client) =>
        consumeApprovalToken(client, {
          tenantId: f.tenant.id,
          agentKey: f.agentKey,
          action: 'pay_invoice',
          params: {} as never,
          approvalId: ask.approval_id,
        }),
      ),
    ).rejects.toMatchObject({ code: 'approval_token_invalid_state' });
    expect(f.sandbox.ledger.charges()).toHaveLength(charges);
    const { rows } = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ status: string; token_hash: Buffer | null; actions: string[] }>(
        `SELECT a.status, a.token_hash,
           (SELECT array_agg(l.action ORDER BY l.seq) FROM audit_log l WHERE l.subject_id = a.id::text) AS actions
         FROM approvals a WHERE a.id = $1`,
        [ask.approval_id],
      ),
    );
    expect(rows[0]).toMatchObject({ status: 'rejected', token_hash: null });
    expect(rows[0]!.actions).toContain('approval.revoked');
    expect(
      (
        await f.t.db.withTenant(f.tenant.id, (c) =>
          c.query(
            "SELECT 1 FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = 'INV-2025-002'",
          ),
        )
      ).rowCount,
    ).toBe(0);

    // Revoked is final: neither approving again nor revoking again.
    const again = await cli.cli(['approvals', 'approve', ask.approval_id, '--as', 'jdoe@example.com'], {
      PAYGATE_USER_TOKEN: f.approver.token,
    });
    expect(again.code).toBe(1);
  });
});
