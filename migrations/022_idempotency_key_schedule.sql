-- The schedule a keyed schedule_payment call made, written in the same transaction as the schedule (its
-- phase 1, which consumes the approval token), as 019 and 021 do for pay_invoice's payment and
-- refund_payment's refund. A call that fails or dies after that must not free its key, or the retry with
-- the same key and token starts a new call that can only be refused (token used, invoice scheduled). The
-- retry answers with this schedule instead, as the first call would have.
ALTER TABLE idempotency_keys ADD COLUMN scheduled_payment_id uuid REFERENCES scheduled_payments(id);
