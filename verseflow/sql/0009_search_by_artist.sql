-- Tracks and albums found by their artist's name too ("beatles yesterday"; catalog/search.py).
--
-- A generated column can only read its own row, so each track and album keeps a copy of its
-- artist's name, `search_artist`, maintained by triggers: set from `artists` when the row is
-- inserted or moves to another artist, and rewritten on every row of an artist that is renamed.
-- From it and the title, generated columns as before: `search_doc` weighs title words A and artist
-- words B (ts_rank then prefers a title match, and a query may tell which part each word matched),
-- and the trigram index covers `title || ' ' || search_artist`, so typos in either are forgiven.
-- Typos word by word ("beatls yesterdy", two typos that whole-text similarity no longer sees) are
-- corrected against `search_vocabulary`, the words of the catalog, also kept by triggers.
-- Adding the columns rewrites both tables, and the vocabulary is filled from what exists: existing
-- rows are backfilled by this migration.

ALTER TABLE tracks ADD COLUMN search_artist text NOT NULL DEFAULT '';
ALTER TABLE albums ADD COLUMN search_artist text NOT NULL DEFAULT '';
UPDATE tracks t SET search_artist = a.name FROM artists a WHERE a.id = t.artist_id;
UPDATE albums b SET search_artist = a.name FROM artists a WHERE a.id = b.artist_id;

-- The insert/move trigger. FOR SHARE, not the foreign key's FOR KEY SHARE: it conflicts with a
-- rename in progress, so an insert racing a rename waits for it and reads the new name (READ
-- COMMITTED re-reads the row it waited for), and a rename racing an insert waits for the insert to
-- commit, after which the rename's own update of the artist's rows sees it. Either way no row keeps
-- a stale name. A missing artist gives '' and the foreign key reports the real error.
CREATE FUNCTION search_artist_of_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_artist := coalesce((SELECT name FROM artists WHERE id = NEW.artist_id FOR SHARE), '');
    RETURN NEW;
END $$;

CREATE TRIGGER tracks_search_artist BEFORE INSERT ON tracks
    FOR EACH ROW EXECUTE FUNCTION search_artist_of_row();
CREATE TRIGGER tracks_search_artist_moved BEFORE UPDATE OF artist_id ON tracks
    FOR EACH ROW WHEN (OLD.artist_id IS DISTINCT FROM NEW.artist_id) EXECUTE FUNCTION search_artist_of_row();
CREATE TRIGGER albums_search_artist BEFORE INSERT ON albums
    FOR EACH ROW EXECUTE FUNCTION search_artist_of_row();
CREATE TRIGGER albums_search_artist_moved BEFORE UPDATE OF artist_id ON albums
    FOR EACH ROW WHEN (OLD.artist_id IS DISTINCT FROM NEW.artist_id) EXECUTE FUNCTION search_artist_of_row();

-- The rename trigger: one UPDATE per table through the artist_id indexes, in the rename's transaction.
CREATE FUNCTION search_artist_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tracks SET search_artist = NEW.name WHERE artist_id = NEW.id AND search_artist IS DISTINCT FROM NEW.name;
    UPDATE albums SET search_artist = NEW.name WHERE artist_id = NEW.id AND search_artist IS DISTINCT FROM NEW.name;
    RETURN NULL;
END $$;

CREATE TRIGGER artists_search_renamed AFTER UPDATE OF name ON artists
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name) EXECUTE FUNCTION search_artist_renamed();

-- The search documents, now with the artist's words (dropping the old column drops its index).
ALTER TABLE tracks DROP COLUMN search_doc;
ALTER TABLE albums DROP COLUMN search_doc;
ALTER TABLE tracks ADD COLUMN search_doc tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('verseflow_search', title), 'A')
    || setweight(to_tsvector('verseflow_search', search_artist), 'B')) STORED;
ALTER TABLE albums ADD COLUMN search_doc tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('verseflow_search', title), 'A')
    || setweight(to_tsvector('verseflow_search', search_artist), 'B')) STORED;
CREATE INDEX tracks_search_doc ON tracks USING gin (search_doc) WITH (fastupdate = off);
CREATE INDEX albums_search_doc ON albums USING gin (search_doc) WITH (fastupdate = off);

-- Typos: the trigram index moves from the title alone to title and artist (the query names the
-- same expression, catalog.search.Source.fuzzy_text).
DROP INDEX tracks_title_trgm;
DROP INDEX albums_title_trgm;
CREATE INDEX tracks_search_trgm ON tracks USING gin ((title || ' ' || search_artist) gin_trgm_ops)
    WITH (fastupdate = off);
CREATE INDEX albums_search_trgm ON albums USING gin ((title || ' ' || search_artist) gin_trgm_ops)
    WITH (fastupdate = off);

-- The vocabulary: every word (of three characters or more, letters and digits only, as the search
-- config spells it) of an artist's name or a release's title, for correcting a query word that
-- begins no word of the catalog into the words it is trigram-similar to. Words are only added: one
-- whose last use went stays harmless (it widens a corrected query by a term that matches nothing)
-- and the vocabulary of a catalog grows far slower than the catalog. Playlists' names stay out:
-- they are users' free text, private ones included. A row's words go in sorted order: two
-- statements adding the same new words lock them in the same order and never deadlock; one waits
-- for the other's transaction to commit, as with any unique key.
CREATE TABLE search_vocabulary (word text COLLATE "C" PRIMARY KEY);
CREATE INDEX search_vocabulary_trgm ON search_vocabulary USING gin (word gin_trgm_ops) WITH (fastupdate = off);

CREATE FUNCTION search_words(words text) RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT lexeme FROM unnest(tsvector_to_array(to_tsvector('verseflow_search', words))) AS lexeme
    WHERE length(lexeme) >= 3 AND lexeme ~ '^[[:alnum:]]+$'
$$;

-- One trigger function for the three tables: its argument names the column holding the words.
CREATE FUNCTION search_vocabulary_of_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_vocabulary (word)
        SELECT word FROM search_words(to_jsonb(NEW) ->> TG_ARGV[0]) word ORDER BY 1
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER artists_search_vocabulary AFTER INSERT OR UPDATE OF name ON artists
    FOR EACH ROW EXECUTE FUNCTION search_vocabulary_of_row('name');
CREATE TRIGGER albums_search_vocabulary AFTER INSERT OR UPDATE OF title ON albums
    FOR EACH ROW EXECUTE FUNCTION search_vocabulary_of_row('title');
CREATE TRIGGER tracks_search_vocabulary AFTER INSERT OR UPDATE OF title ON tracks
    FOR EACH ROW EXECUTE FUNCTION search_vocabulary_of_row('title');

INSERT INTO search_vocabulary (word)
SELECT DISTINCT word FROM (SELECT name AS words FROM artists UNION ALL SELECT title FROM albums
                           UNION ALL SELECT title FROM tracks) catalog, search_words(catalog.words) word;
