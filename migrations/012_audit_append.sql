-- Appending to a tenant's audit chain took three round trips per entry (take the chain's lock, read its
-- tail, insert), and the lock, held until COMMIT, was taken at the transaction's first entry, so every
-- statement after it ran with the tenant's chain locked. paygate now collects a transaction's entries
-- and appends them all just before COMMIT with this function: one round trip, the lock held for it and
-- the COMMIT only.
--
-- The hash is the same as before: sha256(prev_hash || content), content being the entry's canonical JSON
-- (RFC 8785). Its keys are fixed and sort as action, actorId, actorType, at, details, seq, subjectId, so
-- the caller sends the canonical text around `at` and `seq`, and the values assigned here are spliced
-- in: the seq, and the time the entries are written under the lock (as JavaScript's toISOString prints
-- it), so time never runs backwards along a chain. SECURITY INVOKER: row-level security applies to the
-- inserts as to any other.
CREATE FUNCTION paygate_audit_append(
  p_tenant_id uuid,
  p_actor_type text[],
  p_actor_id text[],
  p_action text[],
  p_subject_id text[],
  p_content_before_at text[],
  p_content_between_at_and_seq text[],
  p_content_after_seq text[]
) RETURNS void LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
  v_seq bigint;
  v_hash bytea;
  v_prev bytea;
  v_content text;
  v_at timestamptz;
  v_at_text text;
BEGIN
  -- The same key src/audit/log.ts has always used: the first 8 bytes of sha256('audit:' || tenant), as
  -- a signed big-endian integer.
  PERFORM pg_advisory_xact_lock(
    ('x' || left(encode(sha256(convert_to('audit:' || p_tenant_id::text, 'UTF8')), 'hex'), 16))::bit(64)::bigint);
  -- A new statement, so a new snapshot (READ COMMITTED): it sees the entries of whoever held the lock.
  SELECT seq, hash INTO v_seq, v_hash FROM audit_log
   WHERE tenant_id = p_tenant_id ORDER BY seq DESC LIMIT 1;
  v_seq := coalesce(v_seq, 0);
  v_at := date_trunc('milliseconds', clock_timestamp());
  v_at_text := to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
  v_hash := coalesce(v_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
  FOR i IN 1 .. coalesce(array_length(p_action, 1), 0) LOOP
    v_seq := v_seq + 1;
    v_content := p_content_before_at[i] || '"' || v_at_text || '"' || p_content_between_at_and_seq[i]
                 || v_seq::text || p_content_after_seq[i];
    v_prev := v_hash;
    v_hash := sha256(v_prev || convert_to(v_content, 'UTF8'));
    INSERT INTO audit_log (tenant_id, seq, at, actor_type, actor_id, action, subject_id, content, prev_hash, hash)
    VALUES (p_tenant_id, v_seq, v_at, p_actor_type[i], p_actor_id[i], p_action[i], p_subject_id[i],
            v_content, v_prev, v_hash);
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION paygate_audit_append(uuid, text[], text[], text[], text[], text[], text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paygate_audit_append(uuid, text[], text[], text[], text[], text[], text[], text[]) TO paygate_app;
