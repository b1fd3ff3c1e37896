-- The refund a keyed refund_payment call made, written in the same transaction as the refund (phase 1),
-- as 019 does for pay_invoice's payment. Its approval token is consumed by then: a call that fails or
-- dies after that must not free its key, or the retry with the same key and token starts a new call
-- that can only be told the token was used. The retry answers with this refund's state instead.
ALTER TABLE idempotency_keys ADD COLUMN refund_id uuid REFERENCES refunds(id);
