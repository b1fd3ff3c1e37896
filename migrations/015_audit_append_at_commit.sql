-- Since migration 012 a transaction's audit entries are appended by one paygate_audit_append call just
-- before its COMMIT, and the tenant's chain is locked from that call to the end of the transaction: the
-- append, its answer travelling to the client, the client sending COMMIT, and the commit. On busy cores
-- the middle two are a wake-up of the client and one of the server, and every other transaction of the
-- tenant that wants to append waits behind them (at 8 agents of one tenant, ~5 ms per append).
--
-- Now the client asks for the append with an INSERT into audit_append_requests, and a deferred
-- constraint trigger makes it during COMMIT: the chain's lock is taken at commit and held for the append
-- and the commit's own flush only. Same function, same entries, same hashes: the time is still taken
-- under the lock, and a transaction that fails (or whose commit fails) appends nothing. A request row
-- lives only inside its transaction: the trigger deletes it once the append is made (unlogged: it never
-- needs to survive a crash). Requests fire in the order inserted, and the client inserts one
-- transaction's requests sorted by tenant, as it called the function before, so the order in which a
-- transaction takes several chains' locks is what it was.
CREATE UNLOGGED TABLE audit_append_requests (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id uuid NOT NULL,
  actor_type text[] NOT NULL,
  actor_id text[] NOT NULL,
  action text[] NOT NULL,
  subject_id text[] NOT NULL,
  content_before_at text[] NOT NULL,
  content_between_at_and_seq text[] NOT NULL,
  content_after_seq text[] NOT NULL
);

CREATE FUNCTION paygate_audit_append_requested() RETURNS trigger LANGUAGE plpgsql
SET search_path = public, pg_temp AS $$
BEGIN
  PERFORM paygate_audit_append(NEW.tenant_id, NEW.actor_type, NEW.actor_id, NEW.action, NEW.subject_id,
                               NEW.content_before_at, NEW.content_between_at_and_seq, NEW.content_after_seq);
  DELETE FROM audit_append_requests WHERE id = NEW.id;
  RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER audit_append_at_commit AFTER INSERT ON audit_append_requests
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION paygate_audit_append_requested();

-- A request is visible to no other transaction (it is deleted before its own commits), and the append it
-- asks for goes into audit_log, whose policies apply as to any insert. The tenant's policy here too, in
-- case a request ever outlived its transaction (a trigger disabled by hand).
ALTER TABLE audit_append_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_append_requests USING (tenant_id = paygate_current_tenant())
  WITH CHECK (tenant_id = paygate_current_tenant());
GRANT SELECT, INSERT, DELETE ON audit_append_requests TO paygate_app;
