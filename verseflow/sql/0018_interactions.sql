-- Recommendation signals (ml/interactions.py): one row per (user, track) kept by the `ml.interactions`
-- consumer group from play, library and playlist events, never by scanning raw plays per request.
--
-- `positive` and `negative` are exponentially decayed sums as of `decayed_at`: their value at time T is
-- value * 0.5 ^ ((T - decayed_at) / half-life). Adding evidence first decays the row to the event's time,
-- so the row stays one number per kind of evidence however many plays it summarises.
CREATE TABLE interactions (
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    track_id      uuid NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    positive      double precision NOT NULL DEFAULT 0 CHECK (positive >= 0),  -- completes, partials, adds, follows
    negative      double precision NOT NULL DEFAULT 0 CHECK (negative >= 0),  -- skips
    decayed_at    timestamptz NOT NULL,
    completes     integer NOT NULL DEFAULT 0,
    partials      integer NOT NULL DEFAULT 0,
    skips         integer NOT NULL DEFAULT 0,
    playlist_adds integer NOT NULL DEFAULT 0,
    follows       integer NOT NULL DEFAULT 0,                               -- follows of playlists holding it
    saved         boolean NOT NULL DEFAULT false,                           -- in the library (a starred track)
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, track_id)
);
CREATE INDEX interactions_track ON interactions (track_id);
CREATE INDEX interactions_updated ON interactions (updated_at);

-- Each play as the consumer has classified it so far. A play is `open` until it completes or the same
-- listener starts another play (then it ended where it stopped: a skip below the threshold, else a
-- partial); `dropped` is a start superseded by another play of the same track (a restart, or a Subsonic
-- "now playing" followed by its scrobble). `positive`/`negative` are what the play added to its
-- interaction row, so a later reclassification (a complete arriving after the next start) adds the difference.
CREATE TABLE play_signals (
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    play_id         uuid NOT NULL,
    track_id        uuid NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    state           text NOT NULL CHECK (state IN ('open', 'skip', 'partial', 'complete', 'dropped')),
    max_position_ms bigint NOT NULL DEFAULT 0,
    positive        double precision NOT NULL DEFAULT 0,
    negative        double precision NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, play_id)
);
CREATE INDEX play_signals_open ON play_signals (user_id) WHERE state = 'open';

-- Who listened (a complete or partial play) to what, per hour: trending counts unique listeners per
-- window from here (ml/trending.py), so one listener replaying a track a hundred times counts once.
-- Kept for `rec_listens_retention_days`, then pruned by the event worker.
CREATE TABLE track_listens (
    track_id uuid NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    hour     timestamptz NOT NULL,
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (track_id, hour, user_id)
);
CREATE INDEX track_listens_hour ON track_listens (hour);
