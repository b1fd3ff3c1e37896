/**
 * pass 5: error analysis end to end. A real runtime (startRuntime, its own sandbox), a real
 * PostgreSQL, the real Anthropic SDK against the local fake Messages API via ANTHROPIC_BASE_URL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settleAnalyses } from '../../src/analysis/index.js';
import { approve } from '../../src/approvals/approvals.js';
import { createAgentKey } from '../../src/directory/agent-keys.js';
import { addVendor } from '../../src/directory/counterparties.js';
import { createSealer } from '../../src/directory/encryption.js';
import { addPaymentMethod } from '../../src/directory/payment-methods.js';
import { createTenant } from '../../src/directory/tenants.js';
import { addUser } from '../../src/directory/users.js';
import { addInvoice } from '../../src/payments/invoices.js';
import { payInvoice } from '../../src/payments/pay.js';
import { type Runtime, startRuntime } from '../../src/runtime.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { type FakeMessagesApi, startFakeMessagesApi } from './fake-messages-api.js';

const SECRET = 'testonly-analysis-paygate-secret';
const API_KEY = 'sk-ant-api03-testonly-analysis-key';

describe('error analysis through a real runtime', () => {
  let t: TestDatabase;
  let fake: FakeMessagesApi;
  let rt: Runtime;

  beforeAll(async () => {
    t = await createTestDatabase();
    fake = await startFakeMessagesApi();
    rt = await startRuntime({
      databaseUrl: t.url,
      env: {
        PAYGATE_SECRET: SECRET,
        ANTHROPIC_API_KEY: API_KEY,
        ANTHROPIC_BASE_URL: fake.url,
        ANTHROPIC_MODEL: 'claude-sonnet-4-6',
        PAYGATE_LOG_LEVEL: 'silent',
      },
    });
  });
  afterAll(async () => {
    await rt?.close();
    await fake?.close();
    await t?.drop();
  });

  it('a declined card: the request carries no secret or personal data, and the analysis changes no state', async () => {
    process.env.ANTHROPIC_BASE_URL = fake.url; // the SDK reads it when no baseURL is passed
    try {
      const tenant = await createTenant(t.db, { slug: 'an-test' });
      const admin = await addUser(t.db, tenant.id, null, { email: 'cfo@h5.example', role: 'admin' });
      await addVendor(t.db, tenant.id, admin.user, createSealer(SECRET), {
        name: 'Vendor Five',
        stripeAccount: 'acct_1VendorFive',
        paypalEmail: 'ap@vendor-five.example',
        bank: { routingNumber: '110000000', accountNumber: '000987654321' },
      });
      await addPaymentMethod(t.db, tenant.id, admin.user, {
        rail: 'stripe',
        token: 'pm_card_chargeDeclined',
        label: 'Declining card',
      });
      await addInvoice(t.db, tenant.id, admin.user, {
        number: 'INV-AN-1',
        vendor: 'Vendor Five',
        amountMinor: 42_00,
        currency: 'USD',
      });
      const { agentKey, key } = await createAgentKey(t.db, tenant.id, admin.user, { name: 'claude' });
      const call = { invoice: 'INV-AN-1', amount: '42.00', currency: 'USD', method: 'stripe' as const };
      const ask = (await payInvoice(rt.deps, { agentKey }, call)) as { approval_id: string };
      const token = (await approve(t.db, tenant.id, admin.user, ask.approval_id)).approvalToken!;
      await payInvoice(rt.deps, { agentKey }, { ...call, approval_token: token }).catch((e) => e);
      await settleAnalyses();

      expect(fake.requests.length).toBeGreaterThanOrEqual(1);
      const raw = fake.requests.map((r) => r.raw).join('\n');
      for (const s of [
        key,
        token,
        admin.token,
        SECRET,
        '000987654321',
        'cfo@h5.example',
        'ap@vendor-five.example',
      ])
        expect(raw).not.toContain(s);
      expect(JSON.stringify(fake.requests[0]!.headers)).toContain(API_KEY);

      const { rows } = await t.db.withSystem((c) =>
        c.query<{ status: string; inv: string; analysis: { source: string } | null }>(
          `SELECT p.status, i.status AS inv, a.analysis FROM payments p JOIN invoices i ON i.id = p.invoice_id
             JOIN alerts a ON a.payment_id = p.id WHERE i.number = 'INV-AN-1'`,
        ),
      );
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ status: 'failed', inv: 'approved', analysis: { source: 'claude' } });
    } finally {
      delete process.env.ANTHROPIC_BASE_URL;
    }
  });
});
