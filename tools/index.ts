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
