import { z } from 'zod';
import { listPaymentMethods, paymentMethodJson } from '../src/directory/payment-methods.js';
import { recordRun } from '../src/payments/agent-runs.js';
import { defineTool, errorOutput, readOnlyAnnotations } from './types.js';

export const listPaymentMethodsTool = defineTool({
  name: 'list_payment_methods',
  config: {
    title: 'List payment methods',
    description:
      "The tenant's active payment methods by rail (stripe, paypal, ach), with label, brand, last 4 digits or bank name only. Use a listed rail as `method` in pay_invoice or schedule_payment.",
    inputSchema: {},
    outputSchema: z.looseObject({
      payment_methods: z
        .array(
          z.object({
            payment_method_id: z.string(),
            rail: z.string(),
            provider: z.string(),
            label: z.string().nullable(),
            brand: z.string().nullable(),
            last4: z.string().nullable(),
            bank_name: z.string().nullable(),
          }),
        )
        .optional(),
      ...errorOutput,
    }),
    annotations: readOnlyAnnotations('List payment methods'),
  },
  movesMoney: false,
  handler: ({ deps, caller }) =>
    // A read is on the record too (agent_runs): whether a key was used shows in `paygate agent-key list`.
    recordRun(deps, caller, 'list_payment_methods', async () => {
      const methods = await deps.db.withTenant(caller.agentKey.tenantId, (client) =>
        listPaymentMethods(client),
      );
      return { payment_methods: methods.map(paymentMethodJson) };
    }),
});
