-- The NACHA workflow (src/ach/, docs/nacha.md): the files we send the bank, which payment went in which
-- file under which trace number, the returns and notifications of change the bank sends back.

-- One row per NACHA file we originated. The exact text is kept so that a crash between the commit and
-- the write to disk (or a lost file) is repaired by writing the same bytes again, never by a new file.
-- The text holds vendors' full account numbers, so it is kept sealed (AES-256-GCM under PAYGATE_SECRET,
-- like counterparties.ach_account_ciphertext); content_sha256 is of the plain text, to check a rewrite.
CREATE TABLE ach_files (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id           uuid NOT NULL REFERENCES tenants(id),
  created_at          timestamptz NOT NULL,
  created_by          text NOT NULL,
  file_id_modifier    char(1) NOT NULL CHECK (file_id_modifier ~ '^[A-Z0-9]$'),
  -- The banking day the entries settle, and the last banking day on which a return is expected: a
  -- payment with no return by the end of that day (tenant's time zone) becomes succeeded.
  effective_date      date NOT NULL,
  return_window_ends  date NOT NULL CHECK (return_window_ends >= effective_date),
  content_ciphertext  bytea NOT NULL,
  content_sha256      bytea NOT NULL CHECK (length(content_sha256) = 32),
  entry_count         integer NOT NULL CHECK (entry_count > 0),
  batch_count         integer NOT NULL CHECK (batch_count > 0),
  total_credit_minor  bigint NOT NULL CHECK (total_credit_minor >= 0),
  total_debit_minor   bigint NOT NULL CHECK (total_debit_minor >= 0),
  -- Where the file was last written (atomically); NULL until it has been.
  written_path        text,
  written_at          timestamptz
);
CREATE INDEX ach_files_by_tenant ON ach_files (tenant_id, created_at);

-- A payment joins a file once: the export claims it (FOR UPDATE) and sets the file and, as the provider
-- reference, the entry's trace number, in one transaction.
ALTER TABLE payments ADD COLUMN ach_file_id uuid REFERENCES ach_files(id);
CREATE INDEX payments_ach_unfiled ON payments (tenant_id, created_at)
  WHERE provider = 'nacha' AND status = 'processing' AND ach_file_id IS NULL;
CREATE INDEX payments_ach_filed ON payments (ach_file_id) WHERE ach_file_id IS NOT NULL;

-- Trace numbers are the ODFI routing prefix (8 digits) and a 7-digit sequence. Banks require them unique
-- per ODFI, and payments' provider references are unique per provider across tenants, so the sequence is
-- kept per ODFI prefix, shared by every tenant that originates through that bank. Only counters: no
-- tenant data, hence no row-level security.
CREATE TABLE ach_trace_sequences (
  odfi_prefix   char(8) PRIMARY KEY CHECK (odfi_prefix ~ '^[0-9]{8}$'),
  next_sequence integer NOT NULL CHECK (next_sequence BETWEEN 1 AND 9999999)
);

-- The account type the vendor's bank account is (a NOC C05 may correct it); CCD credits default to checking.
ALTER TABLE counterparties ADD COLUMN ach_account_type text NOT NULL DEFAULT 'checking'
  CHECK (ach_account_type IN ('checking', 'savings'));

-- Every return (addenda 99) we matched to a payment, once: importing the same file twice changes nothing.
CREATE TABLE ach_returns (
  id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id              uuid NOT NULL REFERENCES tenants(id),
  payment_id             uuid NOT NULL REFERENCES payments(id),
  return_code            text NOT NULL CHECK (return_code ~ '^R[0-9]{2}$'),
  original_trace_number  char(15) NOT NULL,
  return_trace_number    char(15) NOT NULL,
  amount_minor           bigint NOT NULL CHECK (amount_minor >= 0),
  -- failed: the payment was processing and is now failed; after_settlement: it had already succeeded
  -- (money moved back after we called it paid: a human must act); already_failed: nothing to change.
  outcome                text NOT NULL CHECK (outcome IN ('failed', 'after_settlement', 'already_failed')),
  source_file            text NOT NULL,
  source_sha256          bytea NOT NULL CHECK (length(source_sha256) = 32),
  imported_by            text NOT NULL,
  imported_at            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (payment_id, return_code, return_trace_number)
);

-- Notifications of change (addenda 98): proposed corrections to a vendor's bank details. Nothing changes
-- until an admin approves one. A corrected account number is sealed like the vendor's own (never plain).
CREATE TABLE ach_corrections (
  id                             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id                      uuid NOT NULL REFERENCES tenants(id),
  payment_id                     uuid NOT NULL REFERENCES payments(id),
  counterparty_id                uuid NOT NULL REFERENCES counterparties(id),
  change_code                    text NOT NULL CHECK (change_code ~ '^C[0-9]{2}$'),
  field                          text NOT NULL,
  corrected_routing_number       char(9) CHECK (corrected_routing_number ~ '^[0-9]{9}$'),
  corrected_account_ciphertext   bytea,
  corrected_account_last4        text,
  corrected_account_type         text CHECK (corrected_account_type IN ('checking', 'savings')),
  -- Corrections paygate does not apply itself (name, identification, ...), shown to the human as written.
  corrected_other                jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- SHA-256 of the corrected data as the bank wrote it: the same NOC imported twice is one proposal.
  corrected_digest               bytea NOT NULL CHECK (length(corrected_digest) = 32),
  original_trace_number          char(15) NOT NULL,
  source_file                    text NOT NULL,
  status                         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
  decided_by                     text,
  decided_at                     timestamptz,
  decision_note                  text,
  created_at                     timestamptz NOT NULL DEFAULT now(),
  CHECK ((status = 'pending') = (decided_at IS NULL)),
  CHECK ((corrected_account_ciphertext IS NULL) = (corrected_account_last4 IS NULL)),
  UNIQUE (payment_id, change_code, corrected_digest)
);
CREATE INDEX ach_corrections_pending ON ach_corrections (tenant_id, created_at) WHERE status = 'pending';

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['ach_files', 'ach_returns', 'ach_corrections']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = paygate_current_tenant()) '
                   'WITH CHECK (tenant_id = paygate_current_tenant())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I TO paygate_app', t);
  END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE ON ach_trace_sequences TO paygate_app;
