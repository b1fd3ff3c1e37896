-- Sessions of the approval page. A human logs in with their personal access token once; the browser then
-- holds a random session secret in an httpOnly cookie, and this table holds only its SHA-256, so the
-- database (or a backup of it) cannot be replayed as a live session.
CREATE TABLE sidecar_sessions (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id     uuid NOT NULL REFERENCES tenants(id),
  user_id       uuid NOT NULL REFERENCES users(id),
  secret_hash   bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  -- Absolute end of the session; an idle session also ends (checked against last_seen_at in code).
  expires_at    timestamptz NOT NULL,
  ended_at      timestamptz
);
CREATE INDEX sidecar_sessions_by_user ON sidecar_sessions (tenant_id, user_id);

-- Same isolation as every tenant-owned table (003). The login lookup by secret happens before the tenant
-- is known, so it runs as a system transaction; everything after runs in the session's tenant.
ALTER TABLE sidecar_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sidecar_sessions USING (tenant_id = paygate_current_tenant())
  WITH CHECK (tenant_id = paygate_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON sidecar_sessions TO paygate_app;
