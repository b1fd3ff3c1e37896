-- Every money-moving call opens with its admission and ends with its agent_runs row completed
-- (src/payments/agent-runs.ts). Each was a short transaction of its own: BEGIN with the tenant, the
-- statement(s), COMMIT: four round trips for the admission (with the tenant's read), three for the end,
-- seven of the twenty-five a payment made to PostgreSQL. As these two functions, called in autocommit,
-- each is one: the function scopes its own implicit transaction to the tenant (and, as before, lets its
-- COMMIT skip the wait for the disk: bookkeeping, made durable by the call's next commit that waits). A
-- refused call's end is still written with its audit entry, in one transaction that waits for the disk:
-- paygate_finish_run inside it.
--
-- SECURITY INVOKER: row-level security applies inside, to the tenant the function scopes itself to. A
-- caller already inside another tenant's transaction is refused rather than switched to this one.

-- Scope a statement's own transaction (autocommit) to a tenant's bookkeeping: row-level security to that
-- tenant, and a COMMIT that does not wait for the disk. Inside that tenant's own transaction it changes
-- nothing: the transaction's rules stand (one that waits for the disk, for an audit entry, still does).
-- From inside another tenant's transaction it is refused rather than switch it. Nothing paygate_app could
-- not do with set_config; the checks are against our own mistakes. Not for a system (cross-tenant)
-- transaction, which has no tenant either: none calls it.
CREATE FUNCTION paygate_bookkeeping_in(p_tenant_id uuid) RETURNS void LANGUAGE plpgsql
  SET search_path = public, pg_temp AS $$
BEGIN
  IF paygate_current_tenant() IS NULL THEN
    PERFORM set_config('app.tenant_id', p_tenant_id::text, true);
    PERFORM set_config('synchronous_commit', 'off', true);
  ELSIF paygate_current_tenant() <> p_tenant_id THEN
    RAISE EXCEPTION 'this transaction belongs to tenant %, not %', paygate_current_tenant(), p_tenant_id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
END
$$;
REVOKE ALL ON FUNCTION paygate_bookkeeping_in(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paygate_bookkeeping_in(uuid) TO paygate_app;

-- The admission: the key as it is now (nothing for a disabled key, and then nothing is recorded), its
-- tenant, and paygate_admit_call (014) under the key's current rate limit. The key's lock is held until
-- this statement's implicit COMMIT, so no longer than before.
CREATE FUNCTION paygate_admit(
  p_lock_key bigint,
  p_lock_timeout text,
  p_run_id uuid,
  p_tenant_id uuid,
  p_agent_key_id uuid,
  p_tool text,
  p_counted_tools text[]
) RETURNS TABLE (calls integer, agent_key agent_keys, tenant tenants) LANGUAGE plpgsql
  SET search_path = public, pg_temp AS $$
BEGIN
  PERFORM paygate_bookkeeping_in(p_tenant_id);
  RETURN QUERY
    SELECT paygate_admit_call(p_lock_key, p_lock_timeout, p_run_id, p_tenant_id, p_agent_key_id, p_tool,
                              p_counted_tools, k.rate_limit_per_minute), k, t
      FROM agent_keys k JOIN tenants t ON t.id = k.tenant_id
     WHERE k.id = p_agent_key_id AND k.tenant_id = p_tenant_id AND k.disabled_at IS NULL;
END
$$;
REVOKE ALL ON FUNCTION paygate_admit(bigint, text, uuid, uuid, uuid, text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paygate_admit(bigint, text, uuid, uuid, uuid, text, text[]) TO paygate_app;

-- The end of a call: the row its admission wrote, completed; or the whole row, when there was no
-- admission (a read-only tool) or it rolled back.
CREATE FUNCTION paygate_finish_run(
  p_run_id uuid,
  p_tenant_id uuid,
  p_agent_key_id uuid,
  p_tool text,
  p_outcome text,
  p_error_code text,
  p_subject_id uuid,
  p_duration_ms integer
) RETURNS void LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
  PERFORM paygate_bookkeeping_in(p_tenant_id);
  INSERT INTO agent_runs (id, tenant_id, agent_key_id, tool, outcome, error_code, subject_id, duration_ms)
  VALUES (p_run_id, p_tenant_id, p_agent_key_id, p_tool, p_outcome, p_error_code, p_subject_id, p_duration_ms)
  ON CONFLICT (id) DO UPDATE SET outcome = EXCLUDED.outcome, error_code = EXCLUDED.error_code,
    subject_id = EXCLUDED.subject_id, duration_ms = EXCLUDED.duration_ms;
END
$$;
REVOKE ALL ON FUNCTION paygate_finish_run(uuid, uuid, uuid, text, text, text, uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paygate_finish_run(uuid, uuid, uuid, text, text, text, uuid, integer) TO paygate_app;
