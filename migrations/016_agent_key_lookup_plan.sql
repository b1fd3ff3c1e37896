-- paygate_agent_key_by_hash (011) runs on every MCP request. As a LANGUAGE sql function with a SET
-- clause it is never inlined, so PostgreSQL before 18 parses and plans its query on every call; in
-- PL/pgSQL the plan is kept for the connection's life. Same signature, result and privileges.
CREATE OR REPLACE FUNCTION paygate_agent_key_by_hash(hash bytea) RETURNS SETOF agent_keys
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
  AS $$ BEGIN RETURN QUERY SELECT * FROM agent_keys WHERE key_hash = $1; END $$;
