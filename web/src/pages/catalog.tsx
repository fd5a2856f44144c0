/** Track, artist and album pages, and the home page (trending). */
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { ErrorText, fmtTime, TrackList } from "../components";
import { enqueue, normalisationGainDb, playQueue } from "../player";
import { Link } from "../router";
import { AddToPlaylist } from "./playlists";

export function useFetch<T>(path: string | null): { data: T | null; error: string | null; reload: () => void } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!path) return;
    let live = true;
    api<T>(path).then((d) => { if (live) { setData(d); setError(null); } })
      .catch((e) => { if (live) setError(e.message); });
    return () => { live = false; };
  }, [path, tick]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}

export function TrackPage({ id }: { id: string }) {
  const { data: t, error } = useFetch<any>(`/v1/tracks/${id}`);
  if (error) return <ErrorText error={error} />;
  if (!t) return <p aria-busy="true">Loading…</p>;
  const a = t.analysis ?? {};
  const item = { id: t.id, title: t.title, artist_name: t.artist_name };
  return (
    <article aria-labelledby="track-title">
      <h1 id="track-title">{t.title}</h1>
      <p><Link to={`/artist/${t.artist_id}`}>{t.artist_name}</Link>
        {t.album_id && <> · <Link to={`/album/${t.album_id}`}>{t.album_title}</Link></>}
        {t.duration_s ? <> · {fmtTime(t.duration_s)}</> : null}</p>
      {t.status === "ready" ? (
        <p class="row">
          <button class="primary" onClick={() => void playQueue([item])}>Play</button>
          <button onClick={() => enqueue(item)}>Add to queue</button>
          <Link to={`/radio/${t.id}`} class="button">Start radio</Link>
        </p>
      ) : <p class="badge">{t.status}</p>}
      {t.status === "ready" && <><SaveButton trackId={t.id} /><AddToPlaylist trackId={t.id} /></>}
      {t.analysis && (
        <dl class="facts" aria-label="Analysis">
          {a.tempo && <><dt>Tempo</dt><dd>{Math.round(a.tempo.bpm)} BPM</dd></>}
          {a.key && <><dt>Key</dt><dd>{a.key.label}</dd></>}
          {a.loudness && <><dt>Loudness</dt><dd>{a.loudness.integrated_lufs.toFixed(1)} LUFS
            (played at {normalisationGainDb(a) >= 0 ? "+" : ""}{normalisationGainDb(a).toFixed(1)} dB)</dd></>}
          {a.genre && <><dt>Genre</dt><dd>{a.genre.label}</dd></>}
        </dl>
      )}
      {t.matches?.length > 0 && <p>Similar recordings found: {t.matches.length}</p>}
      {t.status === "ready" && <Similar id={t.id} />}
    </article>
  );
}

export function ArtistPage({ id }: { id: string }) {
  const artist = useFetch<any>(`/v1/artists/${id}`);
  const tracks = useFetch<any[]>(`/v1/artists/${id}/tracks`);
  const albums = useFetch<any[]>(`/v1/artists/${id}/albums`);
  if (artist.error) return <ErrorText error={artist.error} />;
  if (!artist.data) return <p aria-busy="true">Loading…</p>;
  return (
    <article aria-labelledby="artist-title">
      <h1 id="artist-title">{artist.data.name}</h1>
      {artist.data.bio && <p>{artist.data.bio}</p>}
      <h2>Tracks</h2>
      <TrackList tracks={(tracks.data ?? []).map((t) => ({ ...t, artist_name: artist.data.name }))}
                 label={`Tracks by ${artist.data.name}`} />
      {(albums.data ?? []).length > 0 && <><h2>Albums</h2><ul class="plain">
        {albums.data!.map((al) => <li key={al.id}><Link to={`/album/${al.id}`}>{al.title}</Link></li>)}</ul></>}
    </article>
  );
}

export function AlbumPage({ id }: { id: string }) {
  const { data: album, error } = useFetch<any>(`/v1/albums/${id}`);
  if (error) return <ErrorText error={error} />;
  if (!album) return <p aria-busy="true">Loading…</p>;
  return (
    <article aria-labelledby="album-title">
      <h1 id="album-title">{album.title}</h1>
      <p><Link to={`/artist/${album.artist_id}`}>Artist</Link>{album.release_date && <> · {album.release_date}</>}</p>
      <TrackList tracks={album.tracks} label={`Tracks of ${album.title}`} />
    </article>
  );
}

export function HomePage({ me }: { me: any }) {
  const trending = useFetch<any>("/v1/charts/trending");
  const feed = useFetch<any>("/v1/me/recommendations?limit=10");
  return (
    <section aria-labelledby="home-title">
      <h1 id="home-title">Welcome, {me?.display_name ?? "listener"}</h1>
      <p class="muted">Search above, upload your music, or meet others in a live room.</p>
      {(feed.data?.items ?? []).length > 0 && <>
        <h2>For you</h2>
        <TrackList tracks={feed.data.items.map((i: any) => i.track)} label="Recommended for you" />
      </>}
      <h2>Trending</h2>
      {trending.error ? <p class="muted">Trending is not available.</p> :
        <TrackList tracks={(trending.data?.items ?? []).map((i: any) => i.track)} label="Trending tracks" />}
    </section>
  );
}

/** Save to (or remove from) the library of saved tracks. */
function SaveButton({ trackId }: { trackId: string }) {
  const library = useFetch<any[]>("/v1/me/library/tracks?limit=100");
  const [saved, setSaved] = useState<boolean | null>(null);
  const isSaved = saved ?? (library.data ?? []).some((t) => t.id === trackId);
  const toggle = async () => {
    const r = await api(`/v1/me/library/tracks/${trackId}`, { method: isSaved ? "DELETE" : "PUT" });
    setSaved(r.saved);
  };
  return <p><button aria-pressed={isSaved} onClick={() => void toggle()}>{isSaved ? "Saved to library" : "Save to library"}</button></p>;
}

function Similar({ id }: { id: string }) {
  const { data } = useFetch<any>(`/v1/tracks/${id}/similar?limit=10`);
  const tracks = (data?.items ?? []).map((i: any) => i.track);
  if (!tracks.length) return null;
  return <><h2>Similar tracks</h2><TrackList tracks={tracks} label="Similar tracks" /></>;
}

export function LibraryPage() {
  const { data, error } = useFetch<any[]>("/v1/me/library/tracks?limit=100");
  return (
    <section aria-labelledby="library-title">
      <h1 id="library-title">Your library</h1>
      <ErrorText error={error} />
      {data && <TrackList tracks={data} label="Saved tracks" />}
    </section>
  );
}
