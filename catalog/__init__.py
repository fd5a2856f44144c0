"""Catalog: artists, albums, tracks, playlists and search. Plain Python + asyncpg, no web, no Ray."""
