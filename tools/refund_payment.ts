import { z } from 'zod';
import { refundPayment } from '../src/payments/refund.js';
import {
  APPROVAL_PROTOCOL,
  approvalTokenInput,
  confirmationOutput,
  defineTool,
  idempotencyKeyInput,
  moneyMovingAnnotations,
} from './types.js';

export const refundInput = {
  payment: z
    .string()
    .describe("the payment_id from the confirmation, or the provider's reference (pi_..., capture id)"),
  amount: z
    .string()
    .optional()
    .describe(
      'decimal string for a partial refund, e.g. "100.00"; omit to refund everything not yet refunded',
    ),
  reason: z.string().optional().describe('why, for the approver and the audit log (at most 500 characters)'),
  approval_token: approvalTokenInput,
  idempotency_key: idempotencyKeyInput,
};

export const refundPaymentTool = defineTool({
  name: 'refund_payment',
  config: {
    title: 'Refund a payment',
    description: `Refund a completed payment, fully or partly, through the provider that took it; refunds never add up to more than was captured. A payment sent by ACH file (NACHA) cannot be refunded here. ${APPROVAL_PROTOCOL} The approval is bound to the payment, amount and reason.`,
    inputSchema: refundInput,
    outputSchema: z.looseObject(confirmationOutput),
    annotations: moneyMovingAnnotations('Refund a payment'),
  },
  movesMoney: true,
  handler: ({ deps, caller, server }, args) => refundPayment(deps, caller, args, server),
});
