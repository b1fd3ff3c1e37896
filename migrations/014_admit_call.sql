-- A money-moving call's admission (src/payments/agent-runs.ts) took five round trips inside its short
-- transaction: set the lock timeout, take the agent key's lock, count the key's calls in the last minute,
-- put this call on the record, read the tenant. The first four are this function, one round trip; the
-- lock is still held only until the admission's COMMIT, and the caller still reads the tenant.
--
-- Returns the number of the key's counted calls in the last minute before this one; the call is on the
-- record (`running`, stamped after the lock) only when that number was below p_limit. SECURITY INVOKER:
-- row-level security applies to the count and the insert as to any other statement.
CREATE FUNCTION paygate_admit_call(
  p_lock_key bigint,
  p_lock_timeout text,
  p_run_id uuid,
  p_tenant_id uuid,
  p_agent_key_id uuid,
  p_tool text,
  p_counted_tools text[],
  p_limit integer
) RETURNS integer LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
  v_count integer;
BEGIN
  -- Until the transaction ends: a stalled admission holding the lock makes the key's others give up.
  PERFORM set_config('lock_timeout', p_lock_timeout, true);
  PERFORM pg_advisory_xact_lock(p_lock_key);
  -- A new statement, so a new snapshot (READ COMMITTED): it counts the calls of whoever held the lock.
  SELECT count(*)::int INTO v_count FROM agent_runs
   WHERE tenant_id = p_tenant_id AND agent_key_id = p_agent_key_id AND tool = ANY(p_counted_tools)
     AND created_at > clock_timestamp() - interval '1 minute';
  IF v_count < p_limit THEN
    INSERT INTO agent_runs (id, tenant_id, agent_key_id, tool, outcome, duration_ms, created_at)
    VALUES (p_run_id, p_tenant_id, p_agent_key_id, p_tool, 'running', 0, clock_timestamp());
  END IF;
  RETURN v_count;
END
$$;
REVOKE ALL ON FUNCTION paygate_admit_call(bigint, text, uuid, uuid, uuid, text, text[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paygate_admit_call(bigint, text, uuid, uuid, uuid, text, text[], integer) TO paygate_app;
