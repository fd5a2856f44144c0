-- Billing state VerseFlow acts on (billing/subscriptions.py): the Stripe customer of each user, their
-- subscriptions as last read from Stripe, the plans' prices, and the webhook events already handled.

CREATE TABLE billing_customers (
    user_id            uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    stripe_customer_id text NOT NULL UNIQUE,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- Which plan a Stripe price sells (filled when the catalogue is ensured; read when invoices are booked).
CREATE TABLE billing_prices (
    stripe_price_id text PRIMARY KEY,
    plan            text NOT NULL,
    currency        text NOT NULL,
    unit_amount     bigint NOT NULL,
    interval        text NOT NULL
);

CREATE TABLE billing_subscriptions (
    stripe_subscription_id text PRIMARY KEY,
    user_id                uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan                   text NOT NULL,
    status                 text NOT NULL,
    stripe_price_id        text NOT NULL,
    currency               text NOT NULL,
    unit_amount            bigint NOT NULL,
    interval               text NOT NULL,
    current_period_start   timestamptz,
    current_period_end     timestamptz,
    cancel_at_period_end   boolean NOT NULL DEFAULT false,
    past_due_since         timestamptz,
    started_at             timestamptz NOT NULL,
    ended_at               timestamptz,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_subscriptions_user ON billing_subscriptions (user_id, started_at DESC);

-- Each Stripe event is acted on once: its id is recorded in the transaction that applies it.
CREATE TABLE billing_webhook_events (
    stripe_event_id text PRIMARY KEY,
    type            text NOT NULL,
    created         timestamptz NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now()
);

-- Royalty runs (billing/royalties.py): one per month, model and currency; a re-run finds it here.
CREATE TABLE royalty_runs (
    id         uuid PRIMARY KEY,
    month      date NOT NULL CHECK (extract(day FROM month) = 1),
    model      text NOT NULL CHECK (model IN ('pro_rata', 'user_centric', 'artist_centric')),
    currency   text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    pool       bigint NOT NULL CHECK (pool >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (month, model, currency)
);

-- Statement lines: what one track earned its artist in one run. The lines of a run sum to its pool.
CREATE TABLE royalty_lines (
    run_id    uuid NOT NULL REFERENCES royalty_runs (id) ON DELETE CASCADE,
    artist_id uuid NOT NULL REFERENCES artists (id) ON DELETE CASCADE,
    track_id  uuid NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    streams   bigint NOT NULL CHECK (streams > 0),
    amount    bigint NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (run_id, track_id)
);
CREATE INDEX royalty_lines_artist ON royalty_lines (artist_id, run_id);
