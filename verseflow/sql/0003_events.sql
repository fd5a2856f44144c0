-- Transactional outbox, consumer idempotency records and saga state.
CREATE TABLE outbox (
    id           uuid PRIMARY KEY,
    seq          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    type         text NOT NULL,
    aggregate_id text,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE published_at IS NULL;

-- A handler's effects and its row here commit in one transaction: redelivery is a no-op.
CREATE TABLE processed_events (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE sagas (
    id         uuid PRIMARY KEY,
    kind       text NOT NULL,
    subject_id text NOT NULL,
    status     text NOT NULL CHECK (status IN ('running', 'completed', 'compensating', 'compensated', 'failed')),
    step       integer NOT NULL DEFAULT 0,
    attempts   integer NOT NULL DEFAULT 0,
    data       jsonb NOT NULL DEFAULT '{}',
    error      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, subject_id)
);

-- Wakes the relay as soon as an event commits (it also polls, so a lost notification only delays).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
