-- Retention (verseflow/events/retention.py, accounts/retention.py): an index on what each prune
-- selects by, so a batch reads the rows it deletes and not the table. The outbox needs two: by
-- publication time for the general retention, by type and publication time for types kept for a
-- time of their own (track.progress), which would otherwise rescan a week of other events each run.
-- Unpublished rows are in neither (they are never pruned; outbox_pending serves the relay).
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX outbox_published_by_type ON outbox (type, published_at) WHERE published_at IS NOT NULL;
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_revoked ON refresh_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
