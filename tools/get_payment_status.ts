import { z } from 'zod';
import { getPaymentStatus } from '../src/payments/status.js';
import { confirmationOutput, defineTool, readOnlyAnnotations } from './types.js';

export const getPaymentStatusTool = defineTool({
  name: 'get_payment_status',
  config: {
    title: 'Payment status',
    description:
      "Where a payment stands: by payment (our payment_id or the provider's reference) or by invoice number (its latest payment or schedule); give one of them, not both. Returns the payment's fields, its history, refunds, and on failure the reason and next step. refresh: true asks the provider about a payment still processing and about its pending refunds (it never pays or refunds again).",
    inputSchema: {
      payment: z.string().optional().describe("payment_id or the provider's reference"),
      invoice: z.string().optional().describe('invoice number, e.g. INV-2025-001'),
      refresh: z
        .boolean()
        .optional()
        .describe(
          'ask the provider for the latest outcome of a processing payment and of its pending refunds',
        ),
    },
    outputSchema: z.looseObject({
      ...confirmationOutput,
      history: z.array(z.object({ at: z.string(), status: z.string(), note: z.string() })).optional(),
      refunds: z.array(z.looseObject({ refund_id: z.string(), status: z.string() })).optional(),
      failure: z
        .looseObject({
          code: z.string(),
          message: z.string(),
          next_step: z.string().nullable().optional(),
          analysis: z.looseObject({}).optional(),
        })
        .optional(),
    }),
    // Reading never changes anything we own; refresh asks the provider, so it reaches outside.
    annotations: readOnlyAnnotations('Payment status', true),
  },
  movesMoney: false,
  handler: ({ deps, caller }, args) => getPaymentStatus(deps, caller, args),
});
