-- Resumable uploads (tus 1.0, audio/resumable.py): what a client may resume after a dropped link or a
-- crashed replica. The offset counts only bytes already durable in the object store; each stored
-- piece is a row of resumable_upload_parts, written in the same transaction that moves the offset.
--
-- One PATCH at a time holds an upload through a lease (lease_token, lease_until) instead of a row
-- lock: a lock would pin a pooled connection for the whole body, minutes on a mobile link, while a
-- lease costs one short UPDATE every few seconds and frees itself when a connection dies silently.
-- Every write made under a lease names its token, so a PATCH that lost its lease changes nothing.
CREATE TABLE resumable_uploads (
    id            uuid PRIMARY KEY,
    owner_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    track_id      uuid NOT NULL UNIQUE,           -- the track this upload becomes (reserved at creation)
    upload_length bigint NOT NULL CHECK (upload_length > 0),
    upload_offset bigint NOT NULL DEFAULT 0 CHECK (upload_offset BETWEEN 0 AND upload_length),
    metadata      jsonb NOT NULL,                 -- title, artist_id, album_id, genre, filename, filetype
    raw_metadata  text NOT NULL DEFAULT '',       -- the Upload-Metadata header as sent (HEAD echoes it)
    lease_token   uuid,
    lease_until   timestamptz,
    expires_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resumable_uploads_owner_open ON resumable_uploads (owner_id) WHERE completed_at IS NULL;
CREATE INDEX resumable_uploads_expiry ON resumable_uploads (expires_at);

CREATE TABLE resumable_upload_parts (
    upload_id    uuid NOT NULL REFERENCES resumable_uploads (id) ON DELETE CASCADE,
    start_offset bigint NOT NULL CHECK (start_offset >= 0),
    size         bigint NOT NULL CHECK (size > 0),
    key          text NOT NULL,
    PRIMARY KEY (upload_id, start_offset)
);
