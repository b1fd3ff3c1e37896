/**
 * `paygate alerts resolve` (the BUILT CLI): a human marks an alert dealt with, on the record; the alert
 * that holds a payment is resolved with the payment instead (test/worker/provider-down.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser } from '../src/directory/users.js';
import { payInvoice } from '../src/payments/pay.js';
import { cliFor } from './support/cli.js';
import { approvedPayCall, createFixture, type Fixture } from './support/fixture.js';

describe('paygate alerts resolve', () => {
  let f: Fixture;
  let other: Fixture;
  let cli: ReturnType<typeof cliFor>['cli'];

  /** An open alert: a payment the card's bank declined. */
  async function declinedAlert(fx: Fixture, invoice: string): Promise<string> {
    const call = await approvedPayCall(fx, fx.agentKey, { invoice, amountMinor: 12_00, method: 'stripe' });
    await expect(payInvoice(fx.deps, { agentKey: fx.agentKey }, call)).rejects.toMatchObject({
      code: 'declined',
    });
    const { rows } = await fx.t.db.withTenant(fx.tenant.id, (c) =>
      c.query<{ id: string }>(
        `SELECT a.id FROM alerts a JOIN payments p ON p.id = a.payment_id JOIN invoices i ON i.id = p.invoice_id
          WHERE i.number = $1 AND a.status = 'open'`,
        [invoice],
      ),
    );
    expect(rows).toHaveLength(1);
    return rows[0]!.id;
  }

  const alertOf = async (id: string) =>
    (
      await f.t.db.withSystem((c) =>
        c.query<{ status: string; resolved: boolean }>(
          'SELECT status, resolved_at IS NOT NULL AS resolved FROM alerts WHERE id = $1',
          [id],
        ),
      )
    ).rows[0]!;

  beforeAll(async () => {
    f = await createFixture({ slug: 'alerts-cli' });
    other = await createFixture({ slug: 'alerts-other', t: f.t, sandbox: f.sandbox });
    for (const fx of [f, other])
      await fx.addMethod({
        rail: 'stripe',
        token: 'pm_card_visa_chargeDeclined',
        brand: 'visa',
        last4: '0002',
      });
    cli = cliFor(f.t.url).cli;
  }, 120_000);
  afterAll(async () => {
    await other.close();
    await f.close();
  });

  it('an approver resolves an open alert, with a note on the record; once', async () => {
    const alertId = await declinedAlert(f, 'INV-AL-1');
    const result = await cli(
      ['alerts', 'resolve', alertId, '--note', 'called the bank; paying by ACH', '--json'],
      {
        PAYGATE_USER_TOKEN: f.approver.token,
      },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ alert_id: alertId, status: 'resolved' });
    expect(await alertOf(alertId)).toEqual({ status: 'resolved', resolved: true });
    const open = await cli(['alerts', 'list', '--tenant', 'alerts-cli', '--status', 'open', '--json'], {
      PAYGATE_USER_TOKEN: f.approver.token,
    });
    expect(JSON.parse(open.stdout).map((a: { alert_id: string }) => a.alert_id)).not.toContain(alertId);
    const { rows: audit } = await f.t.db.withSystem((c) =>
      c.query<{ actor_id: string; note: string }>(
        "SELECT actor_id, (content::jsonb)->'details'->>'note' AS note FROM audit_log WHERE action = 'alert.resolved' AND subject_id = $1",
        [alertId],
      ),
    );
    expect(audit).toEqual([{ actor_id: 'jdoe@example.com', note: 'called the bank; paying by ACH' }]);

    const again = await cli(['alerts', 'resolve', alertId], { PAYGATE_USER_TOKEN: f.approver.token });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is already resolved/);
  });

  it('a viewer cannot; an id that is not one is a usage error; another tenant’s alert is not found', async () => {
    const alertId = await declinedAlert(f, 'INV-AL-2');
    const viewer = await addUser(f.t.db, f.tenant.id, f.admin, {
      email: 'viewer@example.com',
      role: 'viewer',
    });
    const byViewer = await cli(['alerts', 'resolve', alertId], { PAYGATE_USER_TOKEN: viewer.token });
    expect(byViewer.code).toBe(1);
    expect(byViewer.stderr).toMatch(/is a viewer/);
    const notAnId = await cli(['alerts', 'resolve', 'INV-AL-2'], { PAYGATE_USER_TOKEN: f.approver.token });
    expect(notAnId.code).toBe(2);
    // Tenant B's admin, asking in B (their token's tenant) or naming tenant A: A's alert is not theirs.
    for (const tenant of [[], ['--tenant', 'alerts-cli']]) {
      const fromOther = await cli(['alerts', 'resolve', alertId, ...tenant], {
        PAYGATE_USER_TOKEN: other.admin.token,
      });
      expect(fromOther.code).toBe(1);
    }
    expect(await alertOf(alertId)).toEqual({ status: 'open', resolved: false });
  });
});
