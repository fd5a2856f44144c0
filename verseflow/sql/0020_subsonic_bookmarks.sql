-- Subsonic bookmarks (createBookmark / getBookmarks / deleteBookmark): where a listener stopped in a
-- song, one per user and song, so a long track resumes on another device.
CREATE TABLE bookmarks (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    track_id    uuid NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    position_ms bigint NOT NULL CHECK (position_ms >= 0),
    comment     text NOT NULL DEFAULT '' CHECK (length(comment) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, track_id)
);
CREATE INDEX bookmarks_user_changed ON bookmarks (user_id, changed_at DESC);

-- savePlayQueueByIndex (the indexBasedQueue extension) names the current entry by its position, so a
-- queue holding one song twice resumes at the right one; NULL when saved by song id (savePlayQueue).
ALTER TABLE play_queues ADD COLUMN current_index integer CHECK (current_index >= 0);
