-- Family plans (billing/family.py): the owner of a family subscription shares it with up to five other
-- accounts. A member belongs to one family at most (member_id is the key); members stay listed when the
-- owner's plan lapses, so a renewed plan gives them back their seat, but they stream as free meanwhile.
CREATE TABLE family_members (
    member_id  uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (owner_id <> member_id)
);
CREATE INDEX family_members_owner ON family_members (owner_id);

-- Invitations: single-use codes shown once to the owner, stored as their SHA-256 (160 random bits:
-- nothing to brute-force), consumed by the member who redeems them.
CREATE TABLE family_invites (
    code_hash  bytea PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX family_invites_owner ON family_invites (owner_id);
