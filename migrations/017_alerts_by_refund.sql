-- The worker finds pending refunds past their re-drive window that have no `refund_pending_too_long`
-- alert yet (src/worker/index.ts, claimRefunds), on every pass; refund.ts and refund-outcome.ts look up
-- a refund's alert of one kind before raising it again. Without this index each of those lookups read
-- the whole alerts table, and a refund left pending stays a candidate on every pass until a human acts.
CREATE INDEX alerts_by_refund ON alerts (refund_id, kind) WHERE refund_id IS NOT NULL;
