-- Finding people by name (accounts/lookup.py: the playlist collaborator picker's type-ahead).
-- A trigram index on the folded display name serves both patterns the lookup uses: the name's start
-- ('carl%') and a later word's start ('% carl%'). pg_trgm is installed by 0004_search.sql.
CREATE INDEX users_display_name_trgm ON users USING gin (lower(display_name) gin_trgm_ops);
