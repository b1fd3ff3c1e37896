/**
 * The bench tenant: an admin who approves, one vendor, a Stripe card, one agent key per concurrent agent
 * (rate limit raised so the bench measures the engine, not the limiter), and invoices with their
 * approval tokens minted before any timing starts, through the same engine calls an agent and a human
 * would make (payInvoice without a token, then approve()).
 */
import { approve } from '../../src/approvals/approvals.js';
import type { Db } from '../../src/db/pool.js';
import { type AgentKey, createAgentKey } from '../../src/directory/agent-keys.js';
import { addVendor } from '../../src/directory/counterparties.js';
import { createSealer } from '../../src/directory/encryption.js';
import { addPaymentMethod } from '../../src/directory/payment-methods.js';
import { createTenant, type Tenant } from '../../src/directory/tenants.js';
import { addUser, type User } from '../../src/directory/users.js';
import type { EngineDeps } from '../../src/payments/context.js';
import { addInvoice } from '../../src/payments/invoices.js';
import { type ApprovalRequired, payInvoice } from '../../src/payments/pay.js';

export const INVOICE_AMOUNT = '500.00';
export const INVOICE_AMOUNT_MINOR = 500_00;

export interface BenchAgent {
  agentKey: AgentKey;
  /** The Bearer secret. */
  key: string;
}

export interface BenchTenant {
  tenant: Tenant;
  admin: User;
  agents: BenchAgent[];
}

export interface PayJob {
  invoice: string;
  token: string;
  approvalId: string;
}

export async function seedTenant(db: Db, agentCount: number, slug = 'bench'): Promise<BenchTenant> {
  const tenant = await createTenant(db, { slug, name: `Bench Corp (${slug})` });
  const { user: admin } = await addUser(db, tenant.id, null, { email: 'admin@example.com', role: 'admin' });
  await addVendor(db, tenant.id, admin, createSealer('bench-secret'), {
    name: 'Acme Supplies',
    stripeAccount: 'acct_1AcmeSupplies',
    paypalEmail: 'billing@acme-supplies.example',
    bank: { routingNumber: '110000000', accountNumber: '000123456789' },
  });
  await addPaymentMethod(db, tenant.id, admin, {
    rail: 'stripe',
    token: 'pm_card_visa',
    label: 'Corporate Visa',
    brand: 'visa',
    last4: '4242',
  });
  const agents: BenchAgent[] = [];
  for (let i = 0; i < agentCount; i++) {
    agents.push(
      await createAgentKey(db, tenant.id, admin, { name: `agent-${i}`, rateLimitPerMinute: 1_000_000 }),
    );
  }
  return { tenant, admin, agents };
}

/**
 * `perAgent` invoices for each agent, each asked for (approval_required) and approved by the admin:
 * returns, per agent, the invoices and the tokens that pay them.
 */
export async function mintPayJobs(
  deps: EngineDeps,
  t: BenchTenant,
  perAgent: number,
  prefix: string,
): Promise<PayJob[][]> {
  return Promise.all(
    t.agents.map(async (agent, a) => {
      const jobs: PayJob[] = [];
      for (let i = 0; i < perAgent; i++) {
        const invoice = `${prefix}-${a}-${i}`;
        await addInvoice(deps.db, t.tenant.id, t.admin, {
          number: invoice,
          vendor: 'Acme Supplies',
          amountMinor: INVOICE_AMOUNT_MINOR,
          currency: 'USD',
        });
        const ask = (await payInvoice(
          deps,
          { agentKey: agent.agentKey },
          payInput(invoice),
        )) as ApprovalRequired;
        if (ask.status !== 'approval_required') throw new Error(`bench: ${invoice} did not ask for approval`);
        const { approvalToken } = await approve(deps.db, t.tenant.id, t.admin, ask.approval_id);
        if (!approvalToken) throw new Error(`bench: approving ${invoice} gave no token`);
        jobs.push({ invoice, token: approvalToken, approvalId: ask.approval_id });
      }
      return jobs;
    }),
  );
}

export function payInput(invoice: string, token?: string) {
  return {
    invoice,
    amount: INVOICE_AMOUNT,
    currency: 'USD',
    method: 'stripe',
    ...(token ? { approval_token: token } : {}),
  };
}
