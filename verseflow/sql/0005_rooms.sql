-- Live rooms: membership and roles, and the sequenced, persisted room log (chat, transport).
CREATE TABLE rooms (
    id         uuid PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    visibility text NOT NULL CHECK (visibility IN ('public', 'private')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rooms_owner ON rooms (owner_id);

-- Explicit roles. The owner is a 'host' row; in a public room anybody without a row joins as a
-- listener; 'banned' is what a kick leaves behind, so a kicked user cannot walk back in.
CREATE TABLE room_members (
    room_id    uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('host', 'collaborator', 'listener', 'banned')),
    invited_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);

-- The room log: every acknowledged message, numbered 1, 2, 3... per room with no gaps. A row is
-- written before the message goes out, so what a client saw survives any process.
CREATE TABLE room_messages (
    room_id    uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        bigint NOT NULL CHECK (seq > 0),
    kind       text NOT NULL CHECK (kind IN ('chat', 'transport')),
    sender_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    body       jsonb NOT NULL,
    client_ref text CHECK (length(client_ref) <= 64),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq)
);
-- A client retrying a message it never saw acknowledged (same ref) gets the original back.
CREATE UNIQUE INDEX room_messages_client_ref ON room_messages (room_id, sender_id, client_ref)
    WHERE client_ref IS NOT NULL;
CREATE INDEX room_messages_transport ON room_messages (room_id, seq DESC) WHERE kind = 'transport';
