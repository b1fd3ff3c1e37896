-- The rate limit on money-moving calls counts one agent key's calls in the last minute, at the start of
-- every pay_invoice, schedule_payment and refund_payment. Through agent_runs_by_tenant (tenant_id,
-- created_at) that count read every call of every agent of the tenant in the last minute, read-only
-- tools included, so its cost grew with the whole tenant's traffic; by key it reads that key's calls.
CREATE INDEX agent_runs_by_agent_key ON agent_runs (agent_key_id, created_at);
