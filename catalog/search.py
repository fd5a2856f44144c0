"""Search over artists, albums, tracks and playlists: one ranked, typo-tolerant SQL per request.

Why in PostgreSQL: the catalog lives there, so results are never stale (the tsvector columns are
generated from the live rows; a track's and an album's copy of its artist's name is kept by the
triggers of ``0009_search_by_artist.sql``) and private playlists are filtered in the same query that
finds them, so a page never holds rows the caller may not see.

What a row is found by: artists and playlists by their name; tracks and albums by their title and
their artist's name together, so "beatles yesterday" finds Yesterday by the Beatles and "beatles"
finds every track of theirs. In a track's or album's search document title words weigh A and artist
words B.

Matching, per table, all served by GIN indexes:
- every query word starts a word of the document (``search_doc @@ 'w1':* & 'w2':*``; a word of one
  letter must match whole, or "a" would match half the catalog), or
- the same with each query word that begins no word of the catalog widened to the catalog words
  closest to it (``(beatls:* | beatles | beat) & (yesterdy:* | yesterday)``): the vocabulary of
  ``0009_search_by_artist.sql`` holds every word of artists' names and releases' titles, and
  corrections are those trigram-similar to the typed word (pg_trgm's ``%``, similarity above 0.3,
  the closest few). This forgives a typo in every word, wherever the words are in the row, or
- the query is trigram-similar to some run of words of the name, or of title and artist name
  (``q <% text``, pg_trgm's word similarity above ``pg_trgm.word_similarity_threshold``, 0.6 by
  default): this forgives what is not a per-word typo ("pinkfloyd").

Ranking: ``score = tier + fraction``. The tier says how the row matched: 3 the whole name or title
equals the query (case-insensitively), 2 every query word is a whole word of the document, 1 every
query word begins one of its words, 0 found only through corrections or trigram similarity. The
fraction, within [0, 1], orders rows inside a tier. For a matched row it is the mean of three parts:
``word_similarity`` to the row's text, a length-normalized ``ts_rank`` (title words count more than
artist words, so for "beatles" the band comes before its tracks and a track titled "Beatles" before
one by them), and a bonus of 1 when a query of two words or more matches the title with some and the
artist's name with some: a track whose title and artist both match ranks above one matched by either
alone. A fuzzy-only row gets the sum of three parts over four: its word similarity to the whole
text, that to the name or title alone (a typo in the title counts more than one in the artist's
name, and a name that is nearly the query beats a track that merely carries it), and the ``ts_rank``
of the corrected query when that matched. So it stays at or below 3/4: exact and prefix matches
always rank above fuzzy ones.

Pagination is keyset, not offset: the opaque cursor carries the last row's ``(score, type, id)`` and
the next page is what sorts strictly after it. A row inserted or renamed between two pages cannot
shift the others into duplicates or gaps. The cursor also carries a fingerprint of the query and the
types, so it only continues the search it came from.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from verseflow.errors import InvalidInput

MAX_QUERY_CHARS = 200
MAX_LIMIT = 100
MAX_CURSOR_CHARS = 200
MIN_PREFIX_CHARS = 2  # shorter query words are matched whole, not as prefixes
CONFIG = "verseflow_search"  # the text search configuration made by 0004_search.sql
MIN_CORRECTED_CHARS = 3  # shorter query words are never corrected (the vocabulary holds none shorter)
CORRECTIONS_PER_WORD = 5  # vocabulary words tried in place of a query word that begins none


@dataclass(frozen=True)
class Source:
    """One searchable table: what its hits are called and how the label reaches the client."""

    type: str
    table: str
    column: str  # the name or title column, and the key it has in a result item
    visible: str = "TRUE"  # a SQL condition on the row ``t``; ``$4`` is the viewer's user id or NULL
    by_artist: bool = False  # also found by its artist's name (``search_artist``, weight B in search_doc)

    @property
    def fuzzy_text(self) -> str:
        """What typos are forgiven in; for tracks and albums, the expression their trigram index covers."""
        if self.by_artist:
            return f"(t.{self.column} || ' ' || t.search_artist)"
        return f"t.{self.column}"


SOURCES: dict[str, Source] = {
    source.type: source
    for source in (
        Source("track", "tracks", "title", by_artist=True),
        Source("artist", "artists", "name"),
        Source("album", "albums", "title", by_artist=True),
        Source(
            "playlist", "playlists", "name",
            visible="(t.public OR t.owner_id = $4::uuid OR EXISTS (SELECT 1 FROM playlist_collaborators c "
                    "WHERE c.playlist_id = t.id AND c.user_id = $4::uuid))",
        ),
    )
}
TYPES = frozenset(SOURCES)


@dataclass(frozen=True)
class After:
    """Where the previous page ended: the last row's sort key."""

    score: float
    type: str
    id: uuid.UUID


@dataclass(frozen=True)
class SearchPage:
    items: list[dict[str, Any]]  # {"type", "id", "title" or "name", "score"}; tracks and albums also
    # "artist_id" and "artist_name"
    next: str | None


def _branch(source: Source) -> str:
    """The hits of one table, scored. ``$1`` the query, ``$2`` the prefix tsquery, ``$3`` the types,
    ``$9`` and ``$10`` any query word in the title (weight A), in the artist's name (weight B);
    ``corrected`` is the query with unknown words widened to their corrections (NULL: none)."""
    label, text = f"t.{source.column}", source.fuzzy_text
    prefixes = f"to_tsquery('{CONFIG}', $2)"
    corrected = "(SELECT query FROM corrected)"
    if source.by_artist:
        artist = "t.artist_id AS artist_id, t.search_artist AS artist_name"
        both = (f"coalesce(t.search_doc @@ to_tsquery('{CONFIG}', $9) "
                f"AND t.search_doc @@ to_tsquery('{CONFIG}', $10), false)")
    else:
        artist, both = "NULL::uuid AS artist_id, NULL::text AS artist_name", "false"
    return f"""
    SELECT type, id, label, artist_id, artist_name,
           tier + CASE WHEN tier > 0 THEN (text_similarity + rank + bonus) / 3
                       ELSE (text_similarity + label_similarity + corrected_rank) / 4 END AS score
    FROM (
        SELECT '{source.type}'::text AS type, t.id, {label} AS label, {artist},
               CASE WHEN lower({label}) = lower($1) THEN 3
                    WHEN t.search_doc @@ plainto_tsquery('{CONFIG}', $1) THEN 2
                    WHEN t.search_doc @@ {prefixes} THEN 1
                    ELSE 0 END AS tier,
               word_similarity($1, {text})::float8 AS text_similarity,
               word_similarity($1, {label})::float8 AS label_similarity,
               least(ts_rank(t.search_doc, {prefixes}, 1), 1)::float8 AS rank,
               ({both})::int::float8 AS bonus,
               CASE WHEN t.search_doc @@ {corrected}
                    THEN least(ts_rank(t.search_doc, {corrected}, 1), 1)::float8 ELSE 0 END AS corrected_rank
        FROM {source.table} t
        WHERE '{source.type}' = ANY($3::text[])
          AND (t.search_doc @@ {prefixes} OR t.search_doc @@ {corrected} OR $1 <% {text})
          AND {source.visible}
    ) matched"""


# The query with each word that begins no word of the catalog (``search_vocabulary``) replaced by
# "itself or one of its closest vocabulary words": ``(beatls:* | beatles | beat) & yesterday:*``.
# ``$11`` the query's words, ``$12`` their prefix terms. NULL when no word needed correcting, which
# is the common case and costs one primary-key probe per word.
CORRECTED_CTE = f"""
WITH words AS (
    SELECT ord, term, coalesce((tsvector_to_array(to_tsvector('{CONFIG}', word)))[1], word) COLLATE "C" AS lexeme
    FROM unnest($11::text[], $12::text[]) WITH ORDINALITY AS q(word, term, ord)
), corrections AS (
    SELECT w.ord, (SELECT string_agg(near.word, ' | ') FROM (
               SELECT v.word FROM search_vocabulary v WHERE v.word % w.lexeme
               ORDER BY similarity(v.word, w.lexeme) DESC, v.word LIMIT {CORRECTIONS_PER_WORD}) near) AS alternatives
    FROM words w
    WHERE length(w.lexeme) >= {MIN_CORRECTED_CHARS} AND NOT EXISTS (
        SELECT 1 FROM search_vocabulary v WHERE v.word >= w.lexeme AND v.word < w.lexeme || chr(1114111))
), corrected AS (
    SELECT CASE WHEN count(c.alternatives) > 0 THEN to_tsquery('{CONFIG}', string_agg(
               CASE WHEN c.alternatives IS NULL THEN w.term ELSE '(' || w.term || ' | ' || c.alternatives || ')' END,
               ' & ' ORDER BY w.ord)) END AS query
    FROM words w LEFT JOIN corrections c USING (ord)
)"""


SEARCH_SQL = f"""{CORRECTED_CTE}
SELECT type, id, label, artist_id, artist_name, score FROM ({" UNION ALL ".join(_branch(s) for s in SOURCES.values())}
) hits
WHERE $5::float8 IS NULL OR (score, type, id) < ($5::float8, $6::text, $7::uuid)
ORDER BY score DESC, type DESC, id DESC
LIMIT $8"""


async def search(
    pool: asyncpg.Pool, query: str, *, types: frozenset[str] = TYPES, viewer: uuid.UUID | None = None,
    limit: int = 20, cursor: str | None = None,
) -> SearchPage:
    """One page of hits for ``query``, best first; private playlists only for their members."""
    text = normalize_query(query)
    if not types or not types <= TYPES:
        raise InvalidInput(f"type must be one of {', '.join(sorted(TYPES))}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    fingerprint = _fingerprint(text, types)
    after = decode_cursor(cursor, fingerprint) if cursor is not None else None
    in_title, in_artist = split_tsqueries(text)
    words = _words(text)
    rows = await pool.fetch(
        SEARCH_SQL, text, prefix_tsquery(text), sorted(types), viewer,
        after.score if after else None, after.type if after else None, after.id if after else None, limit + 1,
        in_title, in_artist, words, [_prefix_term(word) for word in words],
    )
    items = [_item(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:  # one row more than asked for: there is a next page
        last = rows[limit - 1]
        next_cursor = encode_cursor(After(last["score"], last["type"], last["id"]), fingerprint)
    return SearchPage(items=items, next=next_cursor)


def normalize_query(query: str) -> str:
    """Printable text with single spaces, bounded, holding at least one letter or digit."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in query).split())
    if not text:
        raise InvalidInput("q must not be empty")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(f"q must be at most {MAX_QUERY_CHARS} characters")
    if not _words(text):
        raise InvalidInput("q must contain a letter or a digit")
    return text


def prefix_tsquery(text: str) -> str:
    """``w1:* & w2:*`` for to_tsquery: every word as a prefix. Words are runs of letters and digits,
    so they carry no tsquery syntax, whatever the client sent."""
    return " & ".join(_prefix_term(word) for word in _words(text))


def _prefix_term(word: str) -> str:
    return word + (":*" if len(word) >= MIN_PREFIX_CHARS else "")


def split_tsqueries(text: str) -> tuple[str | None, str | None]:
    """``w1:*A | w2:*A`` and ``w1:*B | w2:*B``: some query word in the title, some in the artist's
    name. None for a query of one word, which earns no title-and-artist bonus (one word found in both
    says nothing about which the listener meant)."""
    words = _words(text)
    if len(set(words)) < 2:
        return None, None
    title, artist = (
        " | ".join(_prefix_term(word) + ("" if len(word) >= MIN_PREFIX_CHARS else ":") + weight for word in words)
        for weight in "AB"
    )
    return title, artist


def _item(row: asyncpg.Record) -> dict[str, Any]:
    """One hit as the route shows it: tracks and albums also say whose they are."""
    item = {"type": row["type"], "id": row["id"], SOURCES[row["type"]].column: row["label"], "score": row["score"]}
    if SOURCES[row["type"]].by_artist:
        item |= {"artist_id": row["artist_id"], "artist_name": row["artist_name"]}
    return item


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def encode_cursor(after: After, fingerprint: str) -> str:
    """An opaque, URL-safe cursor: base64 of the last sort key and the search's fingerprint."""
    payload = json.dumps([repr(after.score), after.type, str(after.id), fingerprint], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str) -> After:
    """The sort key in ``cursor``; anything malformed, or from another search, is invalid input."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, kind, row_id, its_fingerprint = json.loads(raw)
        after = After(float(score), str(kind), uuid.UUID(str(row_id)))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor is not valid") from exc
    if not math.isfinite(after.score) or after.type not in TYPES:
        raise InvalidInput("cursor is not valid")
    if its_fingerprint != fingerprint:
        raise InvalidInput("cursor belongs to another search")
    return after


def _fingerprint(text: str, types: frozenset[str]) -> str:
    return hashlib.sha256(json.dumps([text, sorted(types)]).encode()).hexdigest()[:16]
