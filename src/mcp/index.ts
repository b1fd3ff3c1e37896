export { DEFAULT_APPROVAL_POLL_MS, DEFAULT_APPROVAL_WAIT_MS, waitForDecision } from './elicitation.js';
export {
  createMcpHttpHandler,
  DEFAULT_SESSION_IDLE_MS,
  MCP_PATH,
  type McpHttpHandler,
  type McpHttpOptions,
} from './http.js';
export { errorResult, type ToolError, toolErrorResult, toolResult } from './results.js';
export { createMcpServer, type McpRuntime, type McpServerOptions } from './server.js';
export { serveStdio } from './stdio.js';
