import { z } from 'zod';
import { payInvoice } from '../src/payments/pay.js';
import {
  APPROVAL_PROTOCOL,
  approvalTokenInput,
  confirmationOutput,
  defineTool,
  idempotencyKeyInput,
  moneyMovingAnnotations,
} from './types.js';

// Formats (decimals, currency codes, rails) are checked by the engine, not by zod, so a malformed value
// comes back as a structured error with a code and a next step rather than a bare schema message.
export const payInvoiceInput = {
  invoice: z.string().describe('the invoice number, e.g. INV-2025-001 (see list_invoices)'),
  amount: z
    .string()
    .describe('the invoice amount exactly, as a decimal string in the currency\'s units, e.g. "500.00"'),
  currency: z.string().describe('ISO 4217 code of the invoice, e.g. USD'),
  method: z.string().describe('the rail: stripe, paypal or ach (see list_payment_methods)'),
  approval_token: approvalTokenInput,
  idempotency_key: idempotencyKeyInput,
  approver: z
    .string()
    .optional()
    .describe('optional email of the human who should approve; routing only, never evidence of approval'),
};

export const payInvoiceTool = defineTool({
  name: 'pay_invoice',
  config: {
    title: 'Pay an invoice now',
    description: `Pay an approved invoice now through Stripe, PayPal or ACH, for exactly its amount and currency. ${APPROVAL_PROTOCOL} On success the answer has success: true, payment_id, confirmation_number and gateway_reference; an ACH payment stays "processing" until the bank settles it.`,
    inputSchema: payInvoiceInput,
    outputSchema: z.looseObject(confirmationOutput),
    annotations: moneyMovingAnnotations('Pay an invoice now'),
  },
  movesMoney: true,
  handler: ({ deps, caller, server }, args) => payInvoice(deps, caller, args, server),
});
