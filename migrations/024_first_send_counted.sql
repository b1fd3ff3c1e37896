-- Since this release every payment's phase 1 counts its first send (submit_attempts 1), pay-now as
-- scheduled, and the reconciler reads "sent again" as submit_attempts above 1. Pay-now payments still in
-- flight from before were written with the column's default, 0: counted here, so that they too are sent
-- at most three times and a resend of theirs is not taken for a first send.
UPDATE payments SET submit_attempts = 1 WHERE status = 'processing' AND submit_attempts = 0;
