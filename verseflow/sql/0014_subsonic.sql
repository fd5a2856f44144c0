-- The Subsonic API (subsonic/): app passwords, stars, ratings and play queues.
--
-- App passwords are what Subsonic clients sign in with; the login password stays argon2-hashed and is
-- never accepted at /rest/. Token auth (t = md5(password + salt)) needs the password itself, so it is
-- kept encrypted (AES-256-GCM, key derived from the server secret, the row's id and owner bound as
-- associated data); `lookup_hash` (SHA-256 of a 160-bit random secret) finds it for `p` and `apiKey`.
CREATE TABLE app_passwords (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    ciphertext   bytea NOT NULL,
    lookup_hash  bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE INDEX app_passwords_user ON app_passwords (user_id);

-- Favourites and ratings of artists, albums, an artist's singles (tracks without an album) and tracks.
CREATE TABLE stars (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    item_type  text NOT NULL CHECK (item_type IN ('artist', 'album', 'singles', 'track')),
    item_id    uuid NOT NULL,
    starred_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, item_type, item_id)
);

CREATE TABLE ratings (
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    item_type text NOT NULL CHECK (item_type IN ('artist', 'album', 'singles', 'track')),
    item_id   uuid NOT NULL,
    rating    smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    rated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, item_type, item_id)
);

-- One saved play queue per user (savePlayQueue / getPlayQueue), so a listener moves between devices.
CREATE TABLE play_queues (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    track_ids   uuid[] NOT NULL,
    current_id  uuid,
    position_ms bigint NOT NULL DEFAULT 0 CHECK (position_ms >= 0),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text NOT NULL DEFAULT '' CHECK (length(changed_by) <= 200)
);
