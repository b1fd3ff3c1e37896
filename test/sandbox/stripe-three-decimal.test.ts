/**
 * Sandbox fidelity for Stripe's three-decimal currencies (BHD, JOD, KWD, OMR, TND): Stripe takes them
 * only with the last digit 0 (docs.stripe.com/currencies#three-decimal, cited by
 * src/gateways/stripe/mapping.ts). The adapter checks that before a payment's approval; the emulator
 * and the refund path are checked here.
 */
import qs from 'qs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refundPayment } from '../../src/payments/refund.js';
import { SANDBOX_STRIPE_SECRET_KEY } from '../../src/sandbox/index.js';
import { createFixture, type Fixture } from '../support/fixture.js';

describe('Stripe three-decimal currencies', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture({ slug: 'kwd-test' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
  });
  afterAll(async () => f?.close());

  it('the emulator refuses a KWD PaymentIntent whose last digit is not 0, as Stripe does', async () => {
    const response = await fetch(`${f.sandbox.stripeUrl}/v1/payment_intents`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${SANDBOX_STRIPE_SECRET_KEY}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: qs.stringify(
        {
          amount: 1235,
          currency: 'kwd',
          payment_method: 'pm_card_visa',
          confirm: true,
          off_session: true,
          allowed_payment_method_types: ['card'],
        },
        { arrayFormat: 'indices' },
      ),
    });
    const body = (await response.json()) as { error?: { code?: string } };
    expect({ status: response.status, refused: Boolean(body.error) }).toEqual({ status: 400, refused: true });
  });

  it('a partial KWD refund of 0.235 through Stripe is refused before a human is asked to approve it', async () => {
    // KWD 1.230: amount_minor 1230, fine for Stripe.
    const paid = await (async () => {
      await f.addInvoice('INV-KWD-1', 1230, 'KWD');
      const call = { invoice: 'INV-KWD-1', amount: '1.230', currency: 'KWD', method: 'stripe' as const };
      const { payInvoice } = await import('../../src/payments/pay.js');
      const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, call)) as { approval_id: string };
      const token = await f.approveAs(f.admin, ask.approval_id);
      return (await payInvoice(f.deps, { agentKey: f.agentKey }, { ...call, approval_token: token })) as {
        payment_id: string;
        status: string;
      };
    })();
    expect(paid.status).toBe('paid');
    let outcome: unknown;
    try {
      outcome = await refundPayment(
        f.deps,
        { agentKey: f.agentKey },
        { payment: paid.payment_id, amount: '0.235', reason: 'x' },
      );
    } catch (error) {
      outcome = { refused: (error as { code?: string }).code };
    }
    expect(outcome).toEqual({ refused: 'amount_not_supported' });
  });
});
