import { z } from 'zod';
import { UsageError } from '../src/errors.js';
import { recordRun } from '../src/payments/agent-runs.js';
import { type InvoiceStatus, invoiceJson, listInvoices } from '../src/payments/invoices.js';
import { defineTool, errorOutput, readOnlyAnnotations } from './types.js';

const STATUSES: readonly InvoiceStatus[] = ['draft', 'approved', 'scheduled', 'processing', 'paid', 'void'];

export const listInvoicesTool = defineTool({
  name: 'list_invoices',
  config: {
    title: 'List invoices',
    description:
      'The invoices of your tenant, with number, vendor, amount (decimal string), currency, status and due date. Only invoices with status approved can be paid or scheduled; pay exactly the listed amount and currency.',
    inputSchema: {
      status: z.string().optional().describe('filter: draft, approved, scheduled, processing, paid or void'),
    },
    outputSchema: z.looseObject({
      invoices: z
        .array(
          z.object({
            invoice_id: z.string(),
            invoice_number: z.string(),
            vendor: z.string(),
            amount: z.string(),
            amount_minor: z.number().int(),
            currency: z.string(),
            status: z.string(),
            due_date: z.string().nullable(),
          }),
        )
        .optional(),
      ...errorOutput,
    }),
    annotations: readOnlyAnnotations('List invoices'),
  },
  movesMoney: false,
  handler: ({ deps, caller }, args) =>
    // A read is on the record too (agent_runs): whether a key was used shows in `paygate agent-key list`.
    recordRun(deps, caller, 'list_invoices', async () => {
      const status = args.status as InvoiceStatus | undefined;
      if (status !== undefined && !STATUSES.includes(status))
        throw new UsageError(`status must be one of ${STATUSES.join(', ')}`, 'invalid_status');
      const invoices = await deps.db.withTenant(caller.agentKey.tenantId, (client) =>
        listInvoices(client, { status }),
      );
      return { invoices: invoices.map(invoiceJson) };
    }),
});
