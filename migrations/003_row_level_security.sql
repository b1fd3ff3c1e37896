-- Tenant isolation. Every tenant-scoped query runs as paygate_app inside a transaction that has done
-- set_config('app.tenant_id', <tenant>, true); without it the setting is empty, the cast yields NULL and
-- no row matches, so a forgotten tenant sees nothing rather than everything.
CREATE FUNCTION paygate_current_tenant() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting('app.tenant_id', true), '')::uuid
$$;

GRANT USAGE ON SCHEMA public TO paygate_app;
GRANT SELECT ON currencies TO paygate_app;
GRANT EXECUTE ON FUNCTION paygate_current_tenant() TO paygate_app;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['users', 'agent_keys', 'counterparties', 'payment_methods', 'invoices', 'approvals',
    'approval_decisions', 'payments', 'scheduled_payments', 'refunds', 'idempotency_keys', 'webhook_events',
    'alerts', 'agent_runs', 'audit_log']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = paygate_current_tenant()) '
                   'WITH CHECK (tenant_id = paygate_current_tenant())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO paygate_app', t);
  END LOOP;
END
$$;

-- The tenant's own row only.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants USING (id = paygate_current_tenant());
GRANT SELECT ON tenants TO paygate_app;

-- The audit log is append-only for the application, on top of the trigger.
REVOKE UPDATE, DELETE ON audit_log FROM paygate_app;
