/** With achSettleDelayMs the emulator settles ACH debits by itself, as Stripe does days later. */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createStripeGateway } from '../../src/gateways/stripe/client.js';
import { type Sandbox, startSandbox } from '../../src/sandbox/index.js';

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await startSandbox({ stripe: { achSettleDelayMs: 50 } });
});
afterAll(async () => {
  await sandbox.close();
});

it('an ACH debit settles on its own after the configured delay', async () => {
  const gateway = createStripeGateway({ sandboxUrl: sandbox.stripeUrl });
  const outcome = await gateway.pay({
    paymentId: 'pay_ach_delay',
    tenantId: 't1',
    amountMinor: 125_00,
    currency: 'USD',
    rail: 'ach',
    paymentMethodToken: 'pm_usBankAccount_success',
    payee: { name: 'Vendor' },
    invoiceNumber: 'INV-9',
    description: 'INV-9',
  });
  expect(outcome.status).toBe('processing');
  await expect.poll(() => sandbox.ledger.charges('pay_ach_delay')[0]?.status).toBe('succeeded');
  expect(
    (await gateway.retrieve({ paymentId: 'pay_ach_delay', providerReference: outcome.providerReference }))
      ?.status,
  ).toBe('succeeded');
});
