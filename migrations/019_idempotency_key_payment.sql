-- The payment a keyed pay_invoice call made, written in the same transaction as the payment (phase 1).
-- A call that dies between its phases leaves its key unanswered; a retry with the key then answers with
-- this payment's state rather than guess which payment of the invoice was the call's.
ALTER TABLE idempotency_keys ADD COLUMN payment_id uuid REFERENCES payments(id);
