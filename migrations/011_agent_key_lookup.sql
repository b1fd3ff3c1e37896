-- Every MCP request authenticates its agent key. Looking the key up across tenants needed a
-- cross-tenant transaction (BEGIN, SET LOCAL ROLE, SELECT, COMMIT: four round trips); this function
-- answers in one. It is SECURITY DEFINER (owned by the migrating role, which owns agent_keys and so is
-- not subject to its row-level security) and returns only the row whose key hash matches: knowing the
-- hash of a key means holding the key.
CREATE FUNCTION paygate_agent_key_by_hash(hash bytea) RETURNS SETOF agent_keys
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
  AS $$ SELECT * FROM agent_keys WHERE key_hash = hash $$;
REVOKE ALL ON FUNCTION paygate_agent_key_by_hash(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paygate_agent_key_by_hash(bytea) TO paygate_app;
