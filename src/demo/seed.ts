/**
 * The demo tenant `npm start` creates once on a fresh data directory: an admin and an approver with
 * their tokens, an agent key, a vendor, payment methods on all three rails (sandbox tokens), and the
 * approved invoices INV-2025-001..003. Only in sandbox mode: it never seeds a database with live keys.
 *
 * The secrets are shown once and stored only as hashes in the database; so that the next `npm start`
 * can print them again, the demo keeps them in `<data dir>/demo-credentials.json` (mode 0600). That file
 * is sandbox-only convenience; delete it and nothing else changes.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';
import type { Db } from '../db/pool.js';
import { createAgentKey } from '../directory/agent-keys.js';
import { addVendor } from '../directory/counterparties.js';
import { createSealer, resolveSecret } from '../directory/encryption.js';
import { addPaymentMethod } from '../directory/payment-methods.js';
import { createTenant } from '../directory/tenants.js';
import { addUser } from '../directory/users.js';
import { RefusedError } from '../errors.js';
import { addInvoice } from '../payments/invoices.js';

export const DEMO_TENANT = 'acme';

export interface DemoCredentials {
  tenant: string;
  admin: { email: string; token: string };
  approver: { email: string; token: string };
  agentKey: string;
}

const FILE = 'demo-credentials.json';

export async function readDemoCredentials(dataDir: string): Promise<DemoCredentials | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(dataDir, FILE), 'utf8')) as DemoCredentials;
  } catch {
    return undefined;
  }
}

/** Seed the demo tenant unless it exists; returns the credentials (from the file when already seeded). */
export async function seedDemo(
  db: Db,
  config: Config,
): Promise<{ created: boolean; credentials?: DemoCredentials }> {
  if (!config.sandbox)
    throw new RefusedError(
      'demo_needs_sandbox',
      'the demo tenant is only seeded in sandbox mode (no provider keys set)',
    );
  let tenant: Awaited<ReturnType<typeof createTenant>>;
  try {
    tenant = await createTenant(db, {
      slug: DEMO_TENANT,
      name: 'Acme Corp (demo)',
      dualApproval: { thresholdMinor: 10_000_00, currency: 'USD' },
    });
  } catch (error) {
    if (error instanceof RefusedError && error.code === 'tenant_exists')
      return { created: false, credentials: await readDemoCredentials(config.dataDir) };
    throw error;
  }
  const admin = await addUser(db, tenant.id, null, { email: 'admin@example.com', role: 'admin' });
  const approver = await addUser(db, tenant.id, admin.user, {
    email: 'jdoe@example.com',
    role: 'approver',
    limit: { amountMinor: 5_000_00, currency: 'USD' },
  });
  const { key } = await createAgentKey(db, tenant.id, admin.user, {
    name: 'claude',
    maxPerPaymentMinor: 25_000_00,
    maxPerDayMinor: 50_000_00,
    capsCurrency: 'USD',
  });
  const sealer = createSealer(await resolveSecret(config));
  await addVendor(db, tenant.id, admin.user, sealer, {
    name: 'Acme Supplies',
    stripeAccount: 'acct_1AcmeSupplies',
    paypalEmail: 'billing@acme-supplies.example',
    bank: { routingNumber: '110000000', accountNumber: '000123456789' },
  });
  await addPaymentMethod(db, tenant.id, admin.user, {
    rail: 'stripe',
    token: 'pm_card_visa',
    label: 'Corporate Visa',
    brand: 'visa',
    last4: '4242',
  });
  await addPaymentMethod(db, tenant.id, admin.user, {
    rail: 'ach',
    token: 'pm_usBankAccount_success',
    provider: 'stripe',
    label: 'Operating account',
    bankName: 'STRIPE TEST BANK',
    last4: '6789',
  });
  await addPaymentMethod(db, tenant.id, admin.user, {
    rail: 'paypal',
    token: 'pp_vault_success',
    label: 'PayPal business',
  });
  for (const [number, amountMinor] of [
    ['INV-2025-001', 500_00],
    ['INV-2025-002', 1_250_00],
    ['INV-2025-003', 320_00],
  ] as const) {
    await addInvoice(db, tenant.id, admin.user, {
      number,
      vendor: 'Acme Supplies',
      amountMinor,
      currency: 'USD',
    });
  }
  const credentials: DemoCredentials = {
    tenant: DEMO_TENANT,
    admin: { email: admin.user.email, token: admin.token },
    approver: { email: approver.user.email, token: approver.token },
    agentKey: key,
  };
  await fs.mkdir(config.dataDir, { recursive: true });
  await fs.writeFile(path.join(config.dataDir, FILE), JSON.stringify(credentials, null, 2), { mode: 0o600 });
  return { created: true, credentials };
}
