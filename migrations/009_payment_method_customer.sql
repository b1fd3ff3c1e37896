-- A Stripe PaymentMethod saved for off-session use is attached to a Customer, and Stripe requires that
-- customer when confirming a PaymentIntent off-session. Sandbox test methods (pm_card_visa) need none.
ALTER TABLE payment_methods ADD COLUMN provider_customer text
  CHECK (provider_customer IS NULL OR provider_customer ~ '^cus_[A-Za-z0-9]+$');
