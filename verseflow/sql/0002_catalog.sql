-- Catalog: artists (owned by artist users), albums, tracks, playlists.
CREATE TABLE artists (
    id         uuid PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    bio        text NOT NULL DEFAULT '' CHECK (length(bio) <= 5000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX artists_owner ON artists (owner_id);

CREATE TABLE albums (
    id           uuid PRIMARY KEY,
    artist_id    uuid NOT NULL REFERENCES artists (id) ON DELETE CASCADE,
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    release_date date,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX albums_artist ON albums (artist_id);

CREATE TABLE tracks (
    id         uuid PRIMARY KEY,
    artist_id  uuid NOT NULL REFERENCES artists (id) ON DELETE CASCADE,
    album_id   uuid REFERENCES albums (id) ON DELETE SET NULL,
    title      text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    genre      text CHECK (length(genre) <= 100),
    duration_s double precision CHECK (duration_s >= 0 AND duration_s <= 86400),
    status     text NOT NULL DEFAULT 'metadata',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracks_artist ON tracks (artist_id);
CREATE INDEX tracks_album ON tracks (album_id);

CREATE TABLE playlists (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    public      boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX playlists_owner ON playlists (owner_id);

-- Entries are ordered by a dense 0-based position; the unique constraint is deferred so that a
-- move can shift neighbours inside one transaction.
CREATE TABLE playlist_tracks (
    id          uuid PRIMARY KEY,
    playlist_id uuid NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    track_id    uuid NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    position    integer NOT NULL CHECK (position >= 0),
    added_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT playlist_tracks_position UNIQUE (playlist_id, position) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX playlist_tracks_track ON playlist_tracks (track_id);

CREATE TABLE playlist_collaborators (
    playlist_id uuid NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (playlist_id, user_id)
);

CREATE TABLE playlist_follows (
    playlist_id uuid NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (playlist_id, user_id)
);
