-- Double-entry ledger (billing/ledger.py). Amounts are integer minor units (cents) with a currency;
-- a posting's amount is signed: positive debits, negative credits. Every journal entry balances per
-- currency, checked by the database at commit (a deferred constraint trigger), so no code path, crash
-- or hand-written SQL can leave money unaccounted for. Entries are append-only: a correction is a
-- reversing entry, never an UPDATE.

CREATE TABLE ledger_accounts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- stripe_balance, stripe_fees, revenue:<plan>, refunds, royalty_pool, royalties_payable:<artist id>,
    -- platform_share: billing.ledger names them.
    code       text NOT NULL CHECK (code ~ '^[a-z_]+(:[A-Za-z0-9_-]+)?$'),
    kind       text NOT NULL CHECK (kind IN ('asset', 'liability', 'equity', 'revenue', 'contra_revenue', 'expense')),
    currency   text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (code, currency),
    UNIQUE (id, currency)
);

CREATE TABLE ledger_entries (
    id          uuid PRIMARY KEY,
    -- What caused the entry, unique: 'stripe:invoice.paid:in_...' etc. Posting the same source twice is a
    -- no-op, so a redelivered webhook or a retried job cannot count money twice; and every line of an
    -- invoice or statement traces back to its source.
    source_key  text NOT NULL UNIQUE,
    description text NOT NULL,
    occurred_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    metadata    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ledger_entries_occurred ON ledger_entries (occurred_at);

CREATE TABLE ledger_postings (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id   uuid NOT NULL REFERENCES ledger_entries (id),
    account_id bigint NOT NULL,
    currency   text NOT NULL,
    amount     bigint NOT NULL CHECK (amount <> 0),
    -- a posting is in its account's currency: no silent conversion
    FOREIGN KEY (account_id, currency) REFERENCES ledger_accounts (id, currency)
);
CREATE INDEX ledger_postings_entry ON ledger_postings (entry_id);
CREATE INDEX ledger_postings_account ON ledger_postings (account_id);

-- Checked at COMMIT (DEFERRABLE INITIALLY DEFERRED): the postings of an entry may be inserted one by
-- one, but the transaction only commits if each touched entry has two postings or more and sums to
-- zero in every currency.
CREATE FUNCTION ledger_entry_must_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entry uuid;
    postings integer;
    unbalanced text;
BEGIN
    IF TG_TABLE_NAME = 'ledger_entries' THEN
        entry := NEW.id;
    ELSE
        entry := NEW.entry_id;
    END IF;
    SELECT count(*) INTO postings FROM ledger_postings WHERE entry_id = entry;
    IF postings < 2 THEN
        RAISE EXCEPTION 'ledger entry % has % posting(s); a journal entry needs at least two', entry, postings
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_balanced';
    END IF;
    SELECT string_agg(currency || ' ' || total, ', ') INTO unbalanced FROM (
        SELECT currency, sum(amount) AS total FROM ledger_postings WHERE entry_id = entry
        GROUP BY currency HAVING sum(amount) <> 0) AS off;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'ledger entry % does not balance (debits minus credits: %)', entry, unbalanced
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_balanced';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_must_balance();
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_must_balance();

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only (% on %): post a reversing entry instead', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
