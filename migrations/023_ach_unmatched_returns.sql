-- Returns (addenda 99) that name a trace matching none of the tenant's payments. ach_returns records a
-- matched return once (its UNIQUE key makes a re-import a `duplicate` that changes nothing); an unmatched
-- one had no row to collide with, so every re-import of the same file raised one more
-- `ach_return_unmatched` alert. Recording it here, once per tenant, return code and the return entry's own
-- trace (the RDFI's trace, unique to that return), makes a re-import find it and change nothing, as docs/nacha.md
-- promises.
CREATE TABLE ach_unmatched_returns (
  id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id              uuid NOT NULL REFERENCES tenants(id),
  return_code            text NOT NULL CHECK (return_code ~ '^R[0-9]{2}$'),
  original_trace_number  char(15) NOT NULL,
  return_trace_number    char(15) NOT NULL,
  amount_minor           bigint NOT NULL CHECK (amount_minor >= 0),
  source_file            text NOT NULL,
  source_sha256          bytea NOT NULL CHECK (length(source_sha256) = 32),
  imported_by            text NOT NULL,
  imported_at            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, original_trace_number, return_code, return_trace_number)
);
ALTER TABLE ach_unmatched_returns ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ach_unmatched_returns USING (tenant_id = paygate_current_tenant())
  WITH CHECK (tenant_id = paygate_current_tenant());
GRANT SELECT, INSERT ON ach_unmatched_returns TO paygate_app;
