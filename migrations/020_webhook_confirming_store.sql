-- Most provider events confirm what our own call already recorded (the charge answered before its
-- webhook arrived): src/sidecar/webhooks.ts stores such an event as already processed, `ignored`, in
-- one statement. It ran in a cross-tenant transaction (BEGIN and SET LOCAL ROLE, the statement, COMMIT:
-- three round trips for every payment's webhook); as this function it is one, in autocommit.
--
-- SECURITY DEFINER (owned by the migrating role, which owns both tables and so is not subject to their
-- row-level security), like paygate_agent_key_by_hash (011). It writes only an event that names one of
-- our payments already in the status the event reports (and with its reference, when the event names
-- one), stored as processed and ignored: it can record a confirmation, never change a payment.
-- Returns that payment's tenant, or NULL when the event is not such a confirmation (or is stored already).
CREATE FUNCTION paygate_store_confirming_event(
  p_provider text,
  p_event_id text,
  p_event_type text,
  p_payload jsonb,
  p_payment_id uuid,
  p_status text,
  p_provider_reference text,
  p_note text
) RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  v_tenant_id uuid;
BEGIN
  WITH confirmed AS (
      SELECT tenant_id FROM payments
       WHERE id = p_payment_id AND provider = p_provider AND status = p_status
         AND (provider_reference = p_provider_reference OR p_provider_reference IS NULL))
    INSERT INTO webhook_events (provider, event_id, event_type, payload, tenant_id, outcome, note, processed_at)
    SELECT p_provider, p_event_id, p_event_type, p_payload, tenant_id, 'ignored', p_note, now() FROM confirmed
    ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING tenant_id INTO v_tenant_id;
  RETURN v_tenant_id;
END
$$;
REVOKE ALL ON FUNCTION paygate_store_confirming_event(text, text, text, jsonb, uuid, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paygate_store_confirming_event(text, text, text, jsonb, uuid, text, text, text) TO paygate_app;
