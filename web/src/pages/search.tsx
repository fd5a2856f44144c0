/** Search as you type: the header's box drives `q`; results of every kind, best first. */
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { ErrorText, TrackList } from "../components";
import { Link } from "../router";

export function SearchPage({ q }: { q: string }) {
  const [items, setItems] = useState<any[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!q.trim()) { setItems([]); return; }
    const ctl = new AbortController();
    const timer = setTimeout(() => {
      api(`/v1/search?q=${encodeURIComponent(q)}&limit=30`, { signal: ctl.signal })
        .then((r) => { setItems(r.items); setError(null); })
        .catch((e) => { if (e.name !== "AbortError") setError(e.message); });
    }, 120);
    return () => { clearTimeout(timer); ctl.abort(); };
  }, [q]);

  const tracks = (items ?? []).filter((h) => h.type === "track");
  const artists = (items ?? []).filter((h) => h.type === "artist");
  const albums = (items ?? []).filter((h) => h.type === "album");
  const playlists = (items ?? []).filter((h) => h.type === "playlist");
  return (
    <section aria-labelledby="search-title">
      <h1 id="search-title">Results for “{q}”</h1>
      <ErrorText error={error} />
      {items && !items.length && q && <p class="muted">Nothing found.</p>}
      {tracks.length > 0 && <><h2>Tracks</h2><TrackList tracks={tracks} label="Tracks found" /></>}
      {artists.length > 0 && <><h2>Artists</h2><ul class="plain">
        {artists.map((a) => <li key={a.id}><Link to={`/artist/${a.id}`}>{a.name}</Link></li>)}</ul></>}
      {albums.length > 0 && <><h2>Albums</h2><ul class="plain">
        {albums.map((a) => <li key={a.id}><Link to={`/album/${a.id}`}>{a.title}</Link> · {a.artist_name}</li>)}</ul></>}
      {playlists.length > 0 && <><h2>Playlists</h2><ul class="plain">
        {playlists.map((p) => <li key={p.id}>{p.name}</li>)}</ul></>}
    </section>
  );
}
