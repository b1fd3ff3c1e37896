-- Every table of the design's Data section. Money is bigint minor units referencing currencies(code).
-- Every tenant-owned row carries tenant_id; row-level security is in 003.

CREATE TABLE tenants (
  id                                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug                              text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
  name                              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  timezone                          text NOT NULL DEFAULT 'UTC',
  -- Dual control: at or above this amount two distinct approvers are required.
  dual_approval_threshold_minor     bigint CHECK (dual_approval_threshold_minor > 0),
  dual_approval_currency            char(3) REFERENCES currencies(code),
  -- How many times an insufficient-funds failure is rescheduled before it needs a human.
  max_insufficient_funds_reschedules integer NOT NULL DEFAULT 3 CHECK (max_insufficient_funds_reschedules >= 0),
  ach_settings                      jsonb NOT NULL DEFAULT '{}'::jsonb,
  allow_email_in_analysis           boolean NOT NULL DEFAULT false,
  created_at                        timestamptz NOT NULL DEFAULT now(),
  CHECK ((dual_approval_threshold_minor IS NULL) = (dual_approval_currency IS NULL))
);

CREATE TABLE users (
  id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id              uuid NOT NULL REFERENCES tenants(id),
  email                  text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
  role                   text NOT NULL CHECK (role IN ('viewer', 'approver', 'admin')),
  approval_limit_minor   bigint CHECK (approval_limit_minor > 0),
  approval_limit_currency char(3) REFERENCES currencies(code),
  -- SHA-256 of the personal access token; the token itself is shown once and never stored.
  token_hash             bytea NOT NULL UNIQUE,
  disabled_at            timestamptz,
  created_at             timestamptz NOT NULL DEFAULT now(),
  CHECK ((approval_limit_minor IS NULL) = (approval_limit_currency IS NULL))
);
CREATE UNIQUE INDEX users_tenant_email ON users (tenant_id, lower(email));

CREATE TABLE agent_keys (
  id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id             uuid NOT NULL REFERENCES tenants(id),
  name                  text NOT NULL,
  key_hash              bytea NOT NULL UNIQUE,
  -- The first characters of the key, safe to show, so a human can tell keys apart.
  key_prefix            text NOT NULL,
  -- The human this key acts for, if any: that human may not approve this key's requests.
  acts_for_user_id      uuid REFERENCES users(id),
  max_per_payment_minor bigint CHECK (max_per_payment_minor > 0),
  max_per_day_minor     bigint CHECK (max_per_day_minor > 0),
  caps_currency         char(3) REFERENCES currencies(code),
  rate_limit_per_minute integer NOT NULL DEFAULT 60 CHECK (rate_limit_per_minute > 0),
  disabled_at           timestamptz,
  created_at            timestamptz NOT NULL DEFAULT now(),
  CHECK (caps_currency IS NOT NULL OR (max_per_payment_minor IS NULL AND max_per_day_minor IS NULL))
);

CREATE TABLE counterparties (
  id                         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id                  uuid NOT NULL REFERENCES tenants(id),
  kind                       text NOT NULL DEFAULT 'vendor' CHECK (kind IN ('vendor', 'customer')),
  name                       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  stripe_account             text CHECK (stripe_account ~ '^acct_[A-Za-z0-9]+$'),
  paypal_email               text CHECK (paypal_email ~ '^[^@\s]+@[^@\s]+$'),
  ach_routing_number         char(9) CHECK (ach_routing_number ~ '^[0-9]{9}$'),
  -- AES-256-GCM ciphertext (iv || tag || data) under PAYGATE_SECRET; never the plain number.
  ach_account_ciphertext     bytea,
  ach_account_last4          char(4) CHECK (ach_account_last4 ~ '^[0-9]{4}$'),
  created_at                 timestamptz NOT NULL DEFAULT now(),
  CHECK ((ach_routing_number IS NULL) = (ach_account_ciphertext IS NULL)),
  UNIQUE (tenant_id, kind, name)
);

CREATE TABLE payment_methods (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id       uuid NOT NULL REFERENCES tenants(id),
  rail            text NOT NULL CHECK (rail IN ('stripe', 'paypal', 'ach')),
  -- Which provider carries the rail: ACH goes through Stripe (us_bank_account) or NACHA files.
  provider        text NOT NULL CHECK (provider IN ('stripe', 'paypal', 'nacha')),
  provider_token  text NOT NULL CHECK (length(provider_token) BETWEEN 3 AND 255),
  label           text,
  brand           text,
  last4           char(4) CHECK (last4 ~ '^[0-9]{4}$'),
  bank_name       text,
  status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'removed')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  removed_at      timestamptz,
  CHECK ((rail = 'stripe' AND provider = 'stripe') OR (rail = 'paypal' AND provider = 'paypal')
         OR (rail = 'ach' AND provider IN ('stripe', 'nacha')))
);
CREATE UNIQUE INDEX payment_methods_active_token ON payment_methods (tenant_id, rail, provider_token) WHERE status = 'active';

CREATE TABLE invoices (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id       uuid NOT NULL REFERENCES tenants(id),
  number          text NOT NULL CHECK (number ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$'),
  counterparty_id uuid NOT NULL REFERENCES counterparties(id),
  amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
  currency        char(3) NOT NULL REFERENCES currencies(code),
  -- draft -> approved -> (scheduled ->) processing -> paid; a failed payment returns it to approved.
  status          text NOT NULL DEFAULT 'approved'
                  CHECK (status IN ('draft', 'approved', 'scheduled', 'processing', 'paid', 'void')),
  due_date        date,
  description     text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, number)
);

CREATE TABLE approvals (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id           uuid NOT NULL REFERENCES tenants(id),
  action              text NOT NULL CHECK (action IN ('pay_invoice', 'schedule_payment', 'refund_payment')),
  -- The canonical parameters the human approves, and their SHA-256: a token is honoured only for a call
  -- whose own canonical parameters hash to the same digest.
  params              jsonb NOT NULL,
  params_digest       bytea NOT NULL CHECK (length(params_digest) = 32),
  agent_key_id        uuid NOT NULL REFERENCES agent_keys(id),
  requested_approver  text,
  summary             text NOT NULL,
  amount_minor        bigint NOT NULL CHECK (amount_minor > 0),
  currency            char(3) NOT NULL REFERENCES currencies(code),
  required_approvals  smallint NOT NULL DEFAULT 1 CHECK (required_approvals IN (1, 2)),
  status              text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'consumed')),
  token_hash          bytea UNIQUE,
  expires_at          timestamptz NOT NULL,
  decided_at          timestamptz,
  consumed_at         timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  CHECK ((status IN ('approved', 'consumed')) = (token_hash IS NOT NULL)),
  CHECK ((status = 'consumed') = (consumed_at IS NOT NULL))
);
-- Asking twice for the same action returns the same pending request.
CREATE UNIQUE INDEX approvals_one_pending ON approvals (tenant_id, agent_key_id, action, params_digest)
  WHERE status = 'pending';
CREATE INDEX approvals_by_status ON approvals (tenant_id, status, created_at);

CREATE TABLE approval_decisions (
  approval_id uuid NOT NULL REFERENCES approvals(id),
  tenant_id   uuid NOT NULL REFERENCES tenants(id),
  user_id     uuid NOT NULL REFERENCES users(id),
  decision    text NOT NULL CHECK (decision IN ('approve', 'reject')),
  reason      text,
  decided_at  timestamptz NOT NULL DEFAULT now(),
  -- Dual control means two distinct humans: one person cannot approve twice.
  PRIMARY KEY (approval_id, user_id)
);

CREATE TABLE payments (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id           uuid NOT NULL REFERENCES tenants(id),
  invoice_id          uuid NOT NULL REFERENCES invoices(id),
  agent_key_id        uuid REFERENCES agent_keys(id),
  approval_id         uuid NOT NULL REFERENCES approvals(id),
  scheduled_payment_id uuid,
  amount_minor        bigint NOT NULL CHECK (amount_minor > 0),
  currency            char(3) NOT NULL REFERENCES currencies(code),
  rail                text NOT NULL CHECK (rail IN ('stripe', 'paypal', 'ach')),
  provider            text NOT NULL CHECK (provider IN ('stripe', 'paypal', 'nacha')),
  payment_method_id   uuid NOT NULL REFERENCES payment_methods(id),
  -- processing: phase 1 committed, outcome not yet known (the reconciler may ask the provider).
  status              text NOT NULL DEFAULT 'processing'
                      CHECK (status IN ('processing', 'succeeded', 'failed')),
  -- Where a crash left this payment in the atomic phases: started -> provider_called -> finished.
  recovery_point      text NOT NULL DEFAULT 'started'
                      CHECK (recovery_point IN ('started', 'provider_called', 'finished')),
  provider_reference  text,
  confirmation_number text NOT NULL UNIQUE,
  failure_code        text,
  failure_provider_code text,
  failure_message     text,
  attempts            integer NOT NULL DEFAULT 0,
  next_check_at       timestamptz,
  approved_by         text[] NOT NULL DEFAULT '{}',
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  paid_at             timestamptz,
  CHECK ((status = 'succeeded') = (paid_at IS NOT NULL)),
  CHECK (status <> 'failed' OR failure_code IS NOT NULL)
);
CREATE UNIQUE INDEX payments_provider_reference ON payments (provider, provider_reference) WHERE provider_reference IS NOT NULL;
-- At most one payment per invoice may be in flight or done; a failed one does not block a new attempt.
CREATE UNIQUE INDEX payments_one_live_per_invoice ON payments (invoice_id) WHERE status IN ('processing', 'succeeded');
CREATE INDEX payments_to_reconcile ON payments (next_check_at) WHERE status = 'processing';
CREATE INDEX payments_by_tenant ON payments (tenant_id, created_at);

CREATE TABLE scheduled_payments (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id           uuid NOT NULL REFERENCES tenants(id),
  invoice_id          uuid NOT NULL REFERENCES invoices(id),
  agent_key_id        uuid REFERENCES agent_keys(id),
  approval_id         uuid NOT NULL REFERENCES approvals(id),
  amount_minor        bigint NOT NULL CHECK (amount_minor > 0),
  currency            char(3) NOT NULL REFERENCES currencies(code),
  rail                text NOT NULL CHECK (rail IN ('stripe', 'paypal', 'ach')),
  payment_method_id   uuid NOT NULL REFERENCES payment_methods(id),
  scheduled_date      date NOT NULL,
  status              text NOT NULL DEFAULT 'scheduled'
                      CHECK (status IN ('scheduled', 'running', 'executed', 'failed', 'cancelled')),
  payment_id          uuid REFERENCES payments(id),
  reschedule_count    integer NOT NULL DEFAULT 0,
  attempts            integer NOT NULL DEFAULT 0,
  next_attempt_at     timestamptz,
  last_error          text,
  approved_by         text[] NOT NULL DEFAULT '{}',
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX scheduled_payments_one_live_per_invoice ON scheduled_payments (invoice_id)
  WHERE status IN ('scheduled', 'running');
CREATE INDEX scheduled_payments_due ON scheduled_payments (scheduled_date, next_attempt_at) WHERE status = 'scheduled';
ALTER TABLE payments ADD FOREIGN KEY (scheduled_payment_id) REFERENCES scheduled_payments(id);

CREATE TABLE refunds (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id           uuid NOT NULL REFERENCES tenants(id),
  payment_id          uuid NOT NULL REFERENCES payments(id),
  approval_id         uuid REFERENCES approvals(id),
  agent_key_id        uuid REFERENCES agent_keys(id),
  amount_minor        bigint NOT NULL CHECK (amount_minor > 0),
  currency            char(3) NOT NULL REFERENCES currencies(code),
  reason              text,
  status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
  recovery_point      text NOT NULL DEFAULT 'started'
                      CHECK (recovery_point IN ('started', 'provider_called', 'finished')),
  provider_reference  text,
  failure_code        text,
  failure_message     text,
  approved_by         text[] NOT NULL DEFAULT '{}',
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  refunded_at         timestamptz
);
CREATE UNIQUE INDEX refunds_provider_reference ON refunds (payment_id, provider_reference) WHERE provider_reference IS NOT NULL;

CREATE TABLE idempotency_keys (
  tenant_id       uuid NOT NULL REFERENCES tenants(id),
  agent_key_id    uuid NOT NULL REFERENCES agent_keys(id),
  key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  action          text NOT NULL,
  request_digest  bytea NOT NULL,
  status          text NOT NULL DEFAULT 'in_progress' CHECK (status IN ('in_progress', 'completed')),
  response        jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  completed_at    timestamptz,
  PRIMARY KEY (tenant_id, agent_key_id, key),
  CHECK ((status = 'completed') = (response IS NOT NULL))
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

CREATE TABLE webhook_events (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider     text NOT NULL CHECK (provider IN ('stripe', 'paypal')),
  event_id     text NOT NULL,
  event_type   text NOT NULL,
  -- Known once the event is matched to a payment; an event for an unknown payment is kept with none.
  tenant_id    uuid REFERENCES tenants(id),
  payload      jsonb NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  processed_at timestamptz,
  outcome      text CHECK (outcome IN ('applied', 'ignored', 'unmatched', 'failed')),
  note         text,
  UNIQUE (provider, event_id)
);

CREATE TABLE alerts (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id   uuid NOT NULL REFERENCES tenants(id),
  kind        text NOT NULL,
  severity    text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
  payment_id  uuid REFERENCES payments(id),
  refund_id   uuid REFERENCES refunds(id),
  scheduled_payment_id uuid REFERENCES scheduled_payments(id),
  code        text,
  message     text NOT NULL,
  next_step   text,
  analysis    jsonb,
  status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  resolved_at timestamptz
);
CREATE INDEX alerts_by_tenant ON alerts (tenant_id, status, created_at);

CREATE TABLE agent_runs (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id     uuid NOT NULL REFERENCES tenants(id),
  agent_key_id  uuid REFERENCES agent_keys(id),
  -- A tool name for agent calls; 'analysis' for a call to Claude.
  tool          text NOT NULL,
  outcome       text NOT NULL,
  error_code    text,
  subject_id    uuid,
  duration_ms   integer NOT NULL CHECK (duration_ms >= 0),
  usage         jsonb,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_runs_by_tenant ON agent_runs (tenant_id, created_at);

-- Append-only and hash-chained per tenant: hash = sha256(prev_hash || content), content being the
-- entry's canonical JSON (RFC 8785). src/audit/ appends and verifies; the trigger below refuses change.
CREATE TABLE audit_log (
  tenant_id   uuid NOT NULL,
  seq         bigint NOT NULL CHECK (seq >= 1),
  at          timestamptz NOT NULL,
  actor_type  text NOT NULL CHECK (actor_type IN ('agent', 'user', 'system', 'provider', 'cli')),
  actor_id    text,
  action      text NOT NULL,
  subject_id  text,
  content     text NOT NULL,
  prev_hash   bytea NOT NULL CHECK (length(prev_hash) = 32),
  hash        bytea NOT NULL CHECK (length(hash) = 32),
  PRIMARY KEY (tenant_id, seq)
);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
