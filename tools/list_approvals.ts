import { z } from 'zod';
import { type ApprovalStatus, approvalJson, listApprovals } from '../src/approvals/approvals.js';
import { UsageError } from '../src/errors.js';
import { recordRun } from '../src/payments/agent-runs.js';
import { defineTool, errorOutput, readOnlyAnnotations } from './types.js';

const STATUSES: readonly ApprovalStatus[] = ['pending', 'approved', 'rejected', 'expired', 'consumed'];

export const listApprovalsTool = defineTool({
  name: 'list_approvals',
  config: {
    title: 'List approval requests',
    description:
      'The approval requests this agent key made, newest first: what they are for, their status (pending, approved, rejected, expired, consumed) and who approved. It never shows a token: approval tokens come only from the human.',
    inputSchema: {
      status: z.string().optional().describe('filter: pending, approved, rejected, expired or consumed'),
    },
    outputSchema: z.looseObject({
      approvals: z
        .array(
          z.looseObject({
            approval_id: z.string(),
            action: z.string(),
            summary: z.string(),
            amount: z.string(),
            currency: z.string(),
            status: z.string(),
            expires_at: z.string(),
            approve_url: z.string(),
          }),
        )
        .optional(),
      ...errorOutput,
    }),
    annotations: readOnlyAnnotations('List approval requests'),
  },
  movesMoney: false,
  handler: ({ deps, caller }, args) =>
    // A read is on the record too (agent_runs): whether a key was used shows in `paygate agent-key list`.
    recordRun(deps, caller, 'list_approvals', async () => {
      const status = args.status as ApprovalStatus | undefined;
      if (status !== undefined && !STATUSES.includes(status))
        throw new UsageError(`status must be one of ${STATUSES.join(', ')}`, 'invalid_status');
      const approvals = await deps.db.withTenant(caller.agentKey.tenantId, (client) =>
        // An agent sees its own requests: other agents' work in the tenant is not its business.
        listApprovals(client, { status, agentKeyId: caller.agentKey.id }),
      );
      const base = deps.publicUrl.replace(/\/$/, '');
      return {
        approvals: approvals.map((a) => ({ ...approvalJson(a), approve_url: `${base}/approvals/${a.id}` })),
      };
    }),
});
