/** Shared by the ACH tests: a tenant's ODFI settings, and paying an invoice by ACH through the engine. */
import { expect } from 'vitest';
import { type PaymentConfirmation, payInvoice } from '../../src/payments/pay.js';
import type { Fixture } from '../support/fixture.js';

export const odfiSettings = {
  immediateDestination: '091400606',
  immediateDestinationName: 'FIRST BANK & TRUST',
  immediateOrigin: '6910001341',
  immediateOriginName: 'ACME CORP',
  odfiRouting: '091400606',
  companyName: 'ACME CORP',
  companyId: '1234567890',
  balanced: false,
  cutoff: '16:00',
  settlementDays: 2,
};

/** Pay an invoice by ACH (nacha) the way an agent does: ask, a human approves, pay with the token. */
export async function payByAch(f: Fixture, invoice: string, amount: string): Promise<string> {
  const caller = { agentKey: f.agentKey };
  const input = { invoice, amount, currency: 'USD', method: 'ach' };
  const ask = (await payInvoice(f.deps, caller, input)) as { approval_id: string };
  const token = await f.approveAs(f.admin, ask.approval_id);
  const done = (await payInvoice(f.deps, caller, { ...input, approval_token: token })) as PaymentConfirmation;
  expect(done).toMatchObject({ success: true, status: 'processing', payment_method: 'ach' });
  return done.payment_id;
}
