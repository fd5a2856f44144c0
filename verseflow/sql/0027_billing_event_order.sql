-- Where a stored subscription stands among Stripe's events (billing/subscriptions.py, issue 9), so a
-- webhook's own object can be applied without re-reading the subscription from the API when it is
-- newer, and an older event delivered late can never roll the state back. In the seconds of event
-- `created` (Unix time; a test clock's time for objects on one):
--   state_floor:   every event created before it is reflected in the row;
--   state_ceiling: no event created after it is (NULL: not known, so the next event re-reads).
-- Rows stored before this migration have neither: their next event re-reads, as all did before.
ALTER TABLE billing_subscriptions
    ADD COLUMN state_floor   bigint,
    ADD COLUMN state_ceiling bigint,
    ADD CONSTRAINT billing_subscriptions_state_order CHECK (state_ceiling >= state_floor);
