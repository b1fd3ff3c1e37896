import { z } from 'zod';
import { cancelScheduledPayment } from '../src/payments/status.js';
import { defineTool, errorOutput } from './types.js';

export const cancelScheduledPaymentTool = defineTool({
  name: 'cancel_scheduled_payment',
  config: {
    title: 'Cancel a scheduled payment',
    description:
      'Cancel a payment that is still waiting for its date, by scheduled_payment id or invoice number. No approval is needed (it moves no money); the invoice goes back to approved and can be paid or scheduled again (with a new approval).',
    inputSchema: {
      scheduled_payment: z.string().optional().describe('the scheduled_payment_id from schedule_payment'),
      invoice: z.string().optional().describe('invoice number, e.g. INV-2025-001'),
    },
    outputSchema: z.looseObject({
      success: z.boolean().optional(),
      status: z.string().optional().describe('cancelled'),
      scheduled_payment_id: z.string().optional(),
      scheduled_date: z.string().optional(),
      invoice_id: z.string().optional(),
      ...errorOutput,
    }),
    // It changes state (not read-only) but moves no money; cancelling twice fails the second time.
    annotations: {
      title: 'Cancel a scheduled payment',
      readOnlyHint: false,
      destructiveHint: true,
      idempotentHint: false,
      openWorldHint: false,
    },
  },
  movesMoney: false,
  handler: ({ deps, caller }, args) => cancelScheduledPayment(deps, caller, args),
});
