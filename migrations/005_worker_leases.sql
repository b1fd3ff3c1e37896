-- The worker's claims. A worker process claims due rows in one short transaction (FOR UPDATE SKIP LOCKED)
-- and stamps a lease on them; the lease, not an open transaction, keeps other workers away while it
-- works, and a crashed worker's rows come back when its lease runs out.

-- A schedule claimed but not yet started (phase 1 not committed). Once phase 1 commits, the schedule is
-- `running` and its payment carries the lease instead (payments.next_check_at).
ALTER TABLE scheduled_payments ADD COLUMN locked_until timestamptz;
ALTER TABLE scheduled_payments ADD COLUMN locked_by text;

-- How many times phase 2 was sent to the provider for this payment, always with the same idempotency
-- key (the payment id). The worker re-sends a payment the provider has no record of (a crash before the
-- call, or a retryable failure it deferred) at most MAX_SUBMIT_ATTEMPTS times.
ALTER TABLE payments ADD COLUMN submit_attempts smallint NOT NULL DEFAULT 0 CHECK (submit_attempts >= 0);

-- A refund the worker is re-driving: other workers leave it alone until this passes.
ALTER TABLE refunds ADD COLUMN locked_until timestamptz;

CREATE INDEX scheduled_payments_claimable ON scheduled_payments (scheduled_date)
  WHERE status = 'scheduled';
CREATE INDEX refunds_pending ON refunds (updated_at) WHERE status = 'pending';
