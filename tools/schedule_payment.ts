import { z } from 'zod';
import { schedulePayment } from '../src/payments/pay.js';
import { payInvoiceInput } from './pay_invoice.js';
import { APPROVAL_PROTOCOL, confirmationOutput, defineTool, moneyMovingAnnotations } from './types.js';

export const scheduleInput = {
  ...payInvoiceInput,
  scheduled_date: z
    .string()
    .describe(
      "the day to pay, YYYY-MM-DD; today (in the tenant's time zone) or up to a year ahead; for ACH a banking day (Monday to Friday, not a US Federal Reserve holiday)",
    ),
};

export const schedulePaymentTool = defineTool({
  name: 'schedule_payment',
  config: {
    title: 'Schedule an invoice payment',
    description: `Schedule an approved invoice to be paid on scheduled_date (the worker pays it that day). ${APPROVAL_PROTOCOL} The approval is bound to the date too. On success: status "scheduled" with scheduled_payment_id; cancel with cancel_scheduled_payment.`,
    inputSchema: scheduleInput,
    outputSchema: z.looseObject(confirmationOutput),
    annotations: moneyMovingAnnotations('Schedule an invoice payment'),
  },
  movesMoney: true,
  handler: ({ deps, caller, server }, args) => schedulePayment(deps, caller, args, server),
});
