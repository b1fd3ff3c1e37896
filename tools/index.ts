/** Every MCP tool paygate serves. Only src/mcp imports this. */
import { cancelScheduledPaymentTool } from './cancel_scheduled_payment.js';
import { getPaymentStatusTool } from './get_payment_status.js';
import { listApprovalsTool } from './list_approvals.js';
import { listInvoicesTool } from './list_invoices.js';
import { listPaymentMethodsTool } from './list_payment_methods.js';
import { payInvoiceTool } from './pay_invoice.js';
import { refundPaymentTool } from './refund_payment.js';
import { schedulePaymentTool } from './schedule_payment.js';
import type { PaygateTool } from './types.js';

export type { PaygateTool, ToolContext } from './types.js';

// Each tool's handler is typed by its own input schema; the list erases that (the SDK validates the
// arguments against the same schema before a handler runs), hence the one cast below.
export const TOOLS: readonly PaygateTool[] = [
  payInvoiceTool,
  schedulePaymentTool,
  refundPaymentTool,
  getPaymentStatusTool,
  listInvoicesTool,
  listApprovalsTool,
  listPaymentMethodsTool,
  cancelScheduledPaymentTool,
] as unknown as readonly PaygateTool[];
