/**
 * What every tool file exports, and the output schema pieces they share. A tool is data (name, config)
 * plus a handler that only calls the engine; src/mcp turns handler results and engine errors into MCP
 * results, and runs the URL-elicitation loop for the tools that move money.
 */
import { z } from 'zod';
import type { Caller, EngineDeps } from '../src/payments/context.js';
import type { ServerEvidence } from '../src/payments/pay.js';

export interface ToolContext {
  deps: EngineDeps;
  caller: Caller;
  /**
   * Set only by src/mcp after it watched the human approve this request on the approval page (URL
   * elicitation). Never derived from tool arguments.
   */
  server?: ServerEvidence;
}

export interface ToolAnnotations {
  title: string;
  readOnlyHint: boolean;
  destructiveHint: boolean;
  idempotentHint: boolean;
  openWorldHint: boolean;
}

export interface PaygateTool<Shape extends z.ZodRawShape = z.ZodRawShape> {
  name: string;
  config: {
    title: string;
    description: string;
    inputSchema: Shape;
    /** Loose: a result may carry more fields than documented here, and strict clients validate it. */
    outputSchema: z.ZodObject;
    annotations: ToolAnnotations;
  };
  /** Money-moving tools take part in the approval protocol (and URL elicitation). */
  movesMoney: boolean;
  handler(ctx: ToolContext, args: z.infer<z.ZodObject<Shape>>): Promise<object>;
}

/** Define a tool with its handler's arguments typed from its input schema. */
export function defineTool<Shape extends z.ZodRawShape>(tool: PaygateTool<Shape>): PaygateTool<Shape> {
  return tool;
}

/** Honest hints for a tool that moves money: not read-only, not idempotent, reaches a provider. */
export function moneyMovingAnnotations(title: string): ToolAnnotations {
  return { title, readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true };
}

export function readOnlyAnnotations(title: string, openWorld = false): ToolAnnotations {
  return {
    title,
    readOnlyHint: true,
    destructiveHint: false,
    idempotentHint: true,
    openWorldHint: openWorld,
  };
}

/** The isError payload: every tool's outputSchema carries it so error results validate in strict clients. */
export const errorOutput = {
  error: z
    .object({
      code: z.string().describe('stable machine-readable reason, e.g. amount_mismatch, rate_limited'),
      message: z.string().describe('what was wrong'),
      retryable: z.boolean().describe('true when the same call may succeed later (e.g. rate_limited)'),
      next_step: z.string().describe('what to do instead'),
    })
    .optional()
    .describe('present only on isError results'),
};

const text = z.string();
const maybeText = z.string().nullable().optional();

/** `approval_required`: no money moved; a human must approve at approve_url. */
export const approvalRequiredOutput = {
  status: z
    .string()
    .optional()
    .describe('approval_required, or the payment status: paid, processing, scheduled, refunded, ...'),
  approval_id: text.optional(),
  approve_url: text.optional().describe('the page where a human approves this exact action'),
  expires_at: text.optional(),
  summary: text.optional().describe('one line for the human: who gets how much, how, and when'),
  required_approvals: z.number().int().optional(),
  approved_by: z
    .union([z.string(), z.array(z.string())])
    .nullable()
    .optional()
    .describe('the approver (email); on approval_required, those who approved so far'),
};

/** The confirmation of a payment, schedule or refund (DESIGN.md "done"). */
export const confirmationOutput = {
  ...approvalRequiredOutput,
  success: z.boolean().optional(),
  payment_id: maybeText,
  scheduled_payment_id: maybeText,
  invoice_id: maybeText,
  invoice_number: maybeText,
  payee: maybeText,
  amount: maybeText.describe('decimal string, e.g. "500.00"'),
  amount_minor: z.number().int().nullable().optional().describe('integer minor units, e.g. 50000'),
  currency: maybeText,
  payment_method: maybeText.describe('stripe, paypal or ach'),
  provider: maybeText,
  approvers: z.array(z.string()).optional(),
  gateway_reference: maybeText,
  confirmation_number: maybeText,
  paid_at: maybeText,
  scheduled_date: maybeText,
  refunded_amount: maybeText,
  refund_id: maybeText,
  refund_status: maybeText,
  refund_amount: maybeText,
  created_at: maybeText,
  ...errorOutput,
};

/** How the approval protocol reads to an agent; every money-moving tool's description ends with it. */
export const APPROVAL_PROTOCOL = [
  'No money moves until a human approves this exact action.',
  'Protocol: (1) call without approval_token; the answer is status "approval_required" with approve_url and summary.',
  '(2) Ask the human to open approve_url and approve; they get an approval token (apt_...).',
  '(3) Call again with exactly the same arguments plus approval_token set to the token the human gives you.',
  'Never invent, guess or reuse a token; a token fits only the approved invoice, amount, currency, method (and date or reason) and pays once.',
  'If your client supports URL elicitation, the server opens the approval page for you and completes the call once the human approves; you never see a token.',
  '`approver` only routes the request to a person; it proves nothing. Calls are rate-limited per agent key: on rate_limited, wait, do not loop.',
].join(' ');

export const approvalTokenInput = z
  .string()
  .optional()
  .describe(
    'the approval token (apt_...) a human gave you after approving at approve_url; omit on the first call',
  );

export const idempotencyKeyInput = z
  .string()
  .max(200)
  .optional()
  .describe('optional: reuse the same key when retrying after a timeout so the action happens at most once');
