/**
 * A tenant set up the way an operator would (admin, approver, agent key, vendors, payment methods,
 * invoices), a real database, and the sandbox emulators on loopback, with the engine wired to them.
 */
import { approve } from '../../src/approvals/approvals.js';
import { type AgentKey, type AgentKeyInput, createAgentKey } from '../../src/directory/agent-keys.js';
import { addVendor } from '../../src/directory/counterparties.js';
import { createSealer } from '../../src/directory/encryption.js';
import { addPaymentMethod, type PaymentMethodInput } from '../../src/directory/payment-methods.js';
import { createTenant, type Tenant } from '../../src/directory/tenants.js';
import { addUser, type User } from '../../src/directory/users.js';
import { createGateways } from '../../src/gateways/index.js';
import { formatAmount } from '../../src/money.js';
import type { EngineDeps } from '../../src/payments/context.js';
import { addInvoice } from '../../src/payments/invoices.js';
import { type PaymentConfirmation, payInvoice } from '../../src/payments/pay.js';
import { refundPayment } from '../../src/payments/refund.js';
import { type Sandbox, startSandbox } from '../../src/sandbox/index.js';
import { createTestDatabase, type TestDatabase } from './db.js';

export interface Fixture {
  t: TestDatabase;
  sandbox: Sandbox;
  deps: EngineDeps;
  tenant: Tenant;
  admin: User & { token: string };
  approver: User & { token: string };
  agentKey: AgentKey;
  agentKeySecret: string;
  alerts: { alertId: string; code: string }[];
  addInvoice(number: string, amount: number, currency?: string, vendor?: string): Promise<void>;
  addMethod(input: PaymentMethodInput): Promise<void>;
  newAgent(input?: AgentKeyInput): Promise<{ agentKey: AgentKey; key: string }>;
  /** A human approves everything needed for `approvalId`; returns the token. */
  approveAs(user: User, approvalId: string): Promise<string | undefined>;
  close(): Promise<void>;
}

export const instantSleep = async () => {};

function sandboxGateways(sandbox: Sandbox, timeoutMs: number) {
  return createGateways(
    { stripe: {}, paypal: { environment: 'sandbox' } },
    {
      sandbox: { stripeUrl: sandbox.stripeUrl, paypalUrl: sandbox.paypalUrl },
      sleep: instantSleep,
      timeoutMs,
    },
  );
}

/**
 * The fixture's engine in a process whose provider clients wait as long as a slow provider takes (the
 * fixture's own give up after 2 s): for a call held in flight inside the sandbox while a test works.
 */
export function patientDeps(f: Fixture): EngineDeps {
  return { ...f.deps, gateway: sandboxGateways(f.sandbox, 30 * 60_000) };
}

export async function createFixture(
  options: { slug?: string; dualAbove?: number; t?: TestDatabase; sandbox?: Sandbox } = {},
): Promise<Fixture> {
  const t = options.t ?? (await createTestDatabase());
  const sandbox = options.sandbox ?? (await startSandbox());
  const alerts: { alertId: string; code: string }[] = [];
  const deps: EngineDeps = {
    db: t.db,
    gateway: sandboxGateways(sandbox, 2_000),
    publicUrl: 'http://127.0.0.1:8787',
    onAlert: (n) => alerts.push({ alertId: n.alertId, code: n.code }),
  };
  const tenant = await createTenant(t.db, {
    slug: options.slug ?? 'acme',
    dualApproval: options.dualAbove ? { thresholdMinor: options.dualAbove, currency: 'USD' } : undefined,
  });
  const adminAdded = await addUser(t.db, tenant.id, null, { email: 'admin@example.com', role: 'admin' });
  const admin = { ...adminAdded.user, token: adminAdded.token };
  const approverAdded = await addUser(t.db, tenant.id, admin, {
    email: 'jdoe@example.com',
    role: 'approver',
    limit: { amountMinor: 5_000_00, currency: 'USD' },
  });
  const approver = { ...approverAdded.user, token: approverAdded.token };
  const sealer = createSealer('test-secret');
  await addVendor(t.db, tenant.id, admin, sealer, {
    name: 'Acme Supplies',
    stripeAccount: 'acct_1AcmeSupplies',
    paypalEmail: 'billing@acme-supplies.example',
    bank: { routingNumber: '110000000', accountNumber: '000123456789' },
  });
  const { agentKey, key } = await createAgentKey(t.db, tenant.id, admin, { name: 'claude' });
  return {
    t,
    sandbox,
    deps,
    tenant,
    admin,
    approver,
    agentKey,
    agentKeySecret: key,
    alerts,
    async addInvoice(number, amount, currency = 'USD', vendor = 'Acme Supplies') {
      await addInvoice(t.db, tenant.id, admin, { number, vendor, amountMinor: amount, currency });
    },
    async addMethod(input) {
      await addPaymentMethod(t.db, tenant.id, admin, input);
    },
    async newAgent(input = {}) {
      return createAgentKey(t.db, tenant.id, admin, { name: 'agent', ...input });
    },
    async approveAs(user, approvalId) {
      return (await approve(t.db, tenant.id, user, approvalId)).approvalToken;
    },
    async close() {
      if (!options.sandbox) await sandbox.close();
      if (!options.t) await t.drop();
    },
  };
}

/** Invoice, approval by the fixture's admin, and the agent's paid call: the engine's own path. */
export async function payThroughEngine(
  f: Fixture,
  agentKey: AgentKey,
  input: { invoice: string; amountMinor: number; method: 'stripe' | 'paypal' | 'ach' },
): Promise<PaymentConfirmation> {
  const call = await approvedPayCall(f, agentKey, input);
  return (await payInvoice(f.deps, { agentKey }, call)) as PaymentConfirmation;
}

/**
 * A new USD invoice, its pay_invoice asked for (approval_required) and approved by the fixture's admin:
 * the arguments, approval token included, of the call that pays it.
 */
export async function approvedPayCall(
  f: Fixture,
  agentKey: AgentKey,
  input: { invoice: string; amountMinor: number; method: 'stripe' | 'paypal' | 'ach' },
) {
  await f.addInvoice(input.invoice, input.amountMinor);
  const amount = formatAmount(input.amountMinor, 'USD');
  const call = { invoice: input.invoice, amount, currency: 'USD', method: input.method };
  const ask = (await payInvoice(f.deps, { agentKey }, call)) as { approval_id: string; status: string };
  if (ask.status !== 'approval_required')
    throw new Error(`expected approval_required: ${JSON.stringify(ask)}`);
  return { ...call, approval_token: await f.approveAs(f.admin, ask.approval_id) };
}

/** A refund asked for, approved by the fixture's admin, and made: the engine's own path. */
export async function refundThroughEngine(
  f: Fixture,
  payment: string,
  amount?: string,
): Promise<Record<string, unknown>> {
  const caller = { agentKey: f.agentKey };
  const input = { payment, ...(amount ? { amount } : {}), reason: 'test refund' };
  const ask = (await refundPayment(f.deps, caller, input)) as { approval_id: string; status: string };
  if (ask.status !== 'approval_required')
    throw new Error(`expected approval_required: ${JSON.stringify(ask)}`);
  const token = await f.approveAs(f.admin, ask.approval_id);
  return (await refundPayment(f.deps, caller, { ...input, approval_token: token })) as Record<
    string,
    unknown
  >;
}

/** A payment's refund rows, oldest first. */
export async function refundRows(f: Fixture, paymentId: string) {
  const { rows } = await f.t.db.withSystem((c) =>
    c.query<{
      id: string;
      status: string;
      amount_minor: number;
      approval_id: string | null;
      provider_reference: string | null;
    }>(
      'SELECT id, status, amount_minor, approval_id, provider_reference FROM refunds WHERE payment_id = $1 ORDER BY created_at',
      [paymentId],
    ),
  );
  return rows;
}
