-- The Yjs document of each live room (playlist, notes) as an append-only log of binary updates.
-- Every accepted update is a row, written before it is broadcast; now and then the rows up to some
-- id are squashed into one snapshot row that takes over the id of the last row it replaces, so
-- ORDER BY id still replays the snapshot before everything appended after it.
CREATE TABLE room_doc_updates (
    id         bigserial PRIMARY KEY,
    room_id    uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    update     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX room_doc_updates_room ON room_doc_updates (room_id, id);
