-- The audio pipeline: uploaded sources, processing jobs, published media, fingerprints and plays.
--
-- A track's media becomes visible in one transaction (status 'ready', media_prefix, analysis, its
-- landmarks and matches): a job killed before that commit leaves nothing published, and a second
-- run that finds the track already ready publishes nothing.
ALTER TABLE tracks
    ADD COLUMN uploaded_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN source_key   text,
    ADD COLUMN source_bytes bigint,
    ADD COLUMN source_sha256 text,
    ADD COLUMN media_prefix text,
    ADD COLUMN analysis     jsonb,
    ADD COLUMN media        jsonb,
    ADD COLUMN error        jsonb,
    ADD COLUMN published_at timestamptz;

-- One row per upload: where the job is, for progress and for retries after a crash.
CREATE TABLE track_jobs (
    track_id    uuid PRIMARY KEY REFERENCES tracks (id) ON DELETE CASCADE,
    state       text NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts    int NOT NULL DEFAULT 0,
    stage       text,
    progress    real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    timings     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX track_jobs_open ON track_jobs (state) WHERE state IN ('queued', 'running');

-- Landmark hashes of every published track (audio/fingerprint.py): (hash, anchor frame).
CREATE TABLE fingerprint_landmarks (
    hash     int NOT NULL,
    track_id uuid NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    t        int NOT NULL
);
CREATE INDEX fingerprint_landmarks_hash ON fingerprint_landmarks (hash);
CREATE INDEX fingerprint_landmarks_track ON fingerprint_landmarks (track_id);

-- What a track's audio matched at upload: a duplicate or a copyright candidate.
CREATE TABLE track_matches (
    track_id         uuid NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    matched_track_id uuid NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    offset_s         double precision NOT NULL,
    score            double precision NOT NULL,
    speed            double precision NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (track_id, matched_track_id)
);

-- Listening events, for analytics, recommendations and royalties. (user, play_id, event) is unique,
-- so a client retrying a report records it once.
CREATE TABLE plays (
    id          bigserial PRIMARY KEY,
    play_id     uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    track_id    uuid NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    event       text NOT NULL CHECK (event IN ('start', 'progress', 'complete')),
    position_ms bigint NOT NULL CHECK (position_ms >= 0),
    rung        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, play_id, event, position_ms)
);
CREATE INDEX plays_track ON plays (track_id, created_at);
CREATE INDEX plays_user ON plays (user_id, created_at);
