/**
 * What the engine needs from the outside, and who is calling. The engine is callable without MCP: the
 * tools, the CLI demo, the worker and the tests all call these same functions.
 */

import type { Db } from '../db/pool.js';
import type { AgentKey } from '../directory/agent-keys.js';
import type { Gateway, Provider } from '../gateways/types.js';

export interface FailureNotice {
  tenantId: string;
  alertId: string;
  code: string;
  message: string;
  paymentId?: string;
  refundId?: string;
}

export interface EngineDeps {
  db: Db;
  /** The gateway for a provider, or undefined when that provider is not configured. */
  gateway(provider: Provider): Gateway | undefined;
  /** Where humans approve: approve_url is `${publicUrl}/approvals/<id>`. */
  publicUrl: string;
  /** Called after an alert is committed (error analysis hangs here); must not throw or block. */
  onAlert?: (notice: FailureNotice) => void;
  /** Where the engine reports what it cannot put on the record itself (the process logger). */
  logger?: { warn(obj: object, msg?: string): void };
}

export interface Caller {
  agentKey: AgentKey;
}
