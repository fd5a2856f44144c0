-- Royalty streams counted as plays arrive (billing/royalties.py), so the monthly run reads one row per
-- (listener, track) instead of re-aggregating every play event of the month.
--
-- A play (user_id, play_id) qualifies once, at its first event that completed it or reached 30 s
-- (royalties.QUALIFYING_MS); it counts in the month (UTC) of that event. qualified_plays remembers which
-- plays have qualified, so redelivered or later events of the same play never count it twice;
-- monthly_streams holds the counts the run reads. Both are kept by a statement-level trigger on plays:
-- one set-based upsert per INSERT statement, whether it inserts one row (an API call) or millions.

-- No foreign keys here: each would be a check per counted play on the hottest insert path, and the rows
-- (ids only) go within qualified_plays_retention_months anyway, a deleted account's or track's included.
CREATE TABLE qualified_plays (
    user_id     uuid NOT NULL,
    play_id     uuid NOT NULL,
    track_id    uuid NOT NULL,
    month       date NOT NULL,
    PRIMARY KEY (user_id, play_id)
);
-- Pruned by month once no late event of those plays can come (royalties.prune_qualified_plays).
CREATE INDEX qualified_plays_month ON qualified_plays (month);

CREATE TABLE monthly_streams (
    month       date NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    track_id    uuid NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    streams     integer NOT NULL CHECK (streams > 0),
    PRIMARY KEY (month, user_id, track_id)
);
CREATE INDEX monthly_streams_track ON monthly_streams (track_id);

CREATE FUNCTION count_qualified_plays() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH candidates AS (
        SELECT DISTINCT ON (user_id, play_id) user_id, play_id, track_id,
               date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS month
        FROM new_plays
        WHERE event = 'complete' OR position_ms >= 30000
        ORDER BY user_id, play_id, created_at
    ), fresh AS (
        INSERT INTO qualified_plays (user_id, play_id, track_id, month)
        SELECT user_id, play_id, track_id, month FROM candidates
        ON CONFLICT (user_id, play_id) DO NOTHING
        RETURNING month, user_id, track_id
    )
    INSERT INTO monthly_streams (month, user_id, track_id, streams)
    SELECT month, user_id, track_id, count(*) FROM fresh GROUP BY month, user_id, track_id
    ORDER BY month, user_id, track_id  -- one lock order for concurrent statements
    ON CONFLICT (month, user_id, track_id) DO UPDATE SET streams = monthly_streams.streams + EXCLUDED.streams;
    RETURN NULL;
END
$$;

CREATE TRIGGER plays_count_qualified AFTER INSERT ON plays
    REFERENCING NEW TABLE AS new_plays FOR EACH STATEMENT EXECUTE FUNCTION count_qualified_plays();

-- Plays recorded before this migration, counted the same way.
WITH firsts AS (
    SELECT DISTINCT ON (user_id, play_id) user_id, play_id, track_id,
           date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS month
    FROM plays WHERE event = 'complete' OR position_ms >= 30000
    ORDER BY user_id, play_id, created_at
), kept AS (
    INSERT INTO qualified_plays (user_id, play_id, track_id, month) SELECT * FROM firsts
    RETURNING month, user_id, track_id
)
INSERT INTO monthly_streams (month, user_id, track_id, streams)
SELECT month, user_id, track_id, count(*) FROM kept GROUP BY month, user_id, track_id;
