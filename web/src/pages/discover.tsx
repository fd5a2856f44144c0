/**
 * Recommendation surfaces beyond the home feed: radio from a track (a flowing queue from its
 * neighbourhood), trending tracks by window and genre, and breakout artists (for artists and admins).
 */
import { useState } from "preact/hooks";
import { ErrorText, TrackList } from "../components";
import { playQueue } from "../player";
import { Link } from "../router";
import { useFetch } from "./catalog";

export function RadioPage({ id }: { id: string }) {
  const seed = useFetch<any>(`/v1/tracks/${id}`);
  const radio = useFetch<any>(`/v1/radio?seed_track=${id}&limit=25`);
  const tracks = (radio.data?.items ?? []).map((i: any) => i.track);
  const queue = seed.data ? [{ id: seed.data.id, title: seed.data.title, artist_name: seed.data.artist_name },
    ...tracks.map((t: any) => ({ id: t.id, title: t.title, artist_name: t.artist_name }))] : [];
  return (
    <section aria-labelledby="radio-title">
      <h1 id="radio-title">Radio from {seed.data ? <Link to={`/track/${id}`}>{seed.data.title}</Link> : "…"}</h1>
      <ErrorText error={seed.error ?? radio.error} />
      <p class="muted">Tracks near this one, in an order that flows, no artist twice in a row.</p>
      <p><button class="primary" disabled={!queue.length} onClick={() => void playQueue(queue)}>Play the radio</button></p>
      {radio.data && <TrackList tracks={tracks} label="Radio queue" />}
    </section>
  );
}

const WINDOWS = [["24h", "Last 24 hours"], ["7d", "Last 7 days"]];

export function DiscoverPage({ me }: { me: any }) {
  const [span, setSpan] = useState("24h");
  const [genre, setGenre] = useState("");
  const trending = useFetch<any>(`/v1/charts/trending?window=${span}&limit=20${genre ? `&genre=${encodeURIComponent(genre)}` : ""}`);
  const canSeeBreakouts = me.role === "artist" || me.role === "admin";
  return (
    <section aria-labelledby="discover-title">
      <h1 id="discover-title">Discover</h1>
      <h2>Trending</h2>
      <p class="muted">Tracks whose listeners grow fastest, not the most played.</p>
      <div class="row wrap">
        <label>Window<select value={span} onChange={(e) => setSpan((e.target as HTMLSelectElement).value)}>
          {WINDOWS.map(([v, l]) => <option key={v} value={v}>{l}</option>)}</select></label>
        <label class="grow">Genre<input type="search" value={genre} maxLength={100} placeholder="any"
                                      onChange={(e) => setGenre((e.target as HTMLInputElement).value.trim())} /></label>
      </div>
      <ErrorText error={trending.error} />
      {trending.data && <TrackList tracks={trending.data.items.map((i: any) => i.track)} label="Trending tracks" />}
      {canSeeBreakouts && <Breakouts />}
    </section>
  );
}

function Breakouts() {
  const [span, setSpan] = useState("7d");
  const { data, error } = useFetch<any>(`/v1/discovery/breakouts?window=${span}&limit=20`);
  return (
    <>
      <h2>Breakout artists</h2>
      <p class="muted">Artists whose unique listeners grow fastest against their own baseline.</p>
      <label>Breakout window<select value={span} onChange={(e) => setSpan((e.target as HTMLSelectElement).value)}>
        {WINDOWS.map(([v, l]) => <option key={v} value={v}>{l}</option>)}</select></label>
      <ErrorText error={error} />
      {data && !data.items.length && <p class="muted">No breakouts in this window.</p>}
      {data && data.items.length > 0 && (
        <ol class="plain" aria-label="Breakout artists">
          {data.items.map((b: any) => (
            <li key={b.artist.id}><Link to={`/artist/${b.artist.id}`}>{b.artist.name}</Link>
              <span class="muted"> · {b.listeners} listeners (baseline {b.baseline_listeners.toFixed(1)})</span></li>))}
        </ol>)}
    </>
  );
}
