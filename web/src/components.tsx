/** Small shared pieces: track rows, durations, error text, the loudness readout. */
import { enqueue, playQueue, type QueueItem } from "./player";
import { Link } from "./router";

export function fmtTime(s: number): string {
  if (!Number.isFinite(s) || s < 0) s = 0;
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
}

export function ErrorText({ error }: { error: string | null }) {
  return error ? <p class="error" role="alert">{error}</p> : null;
}

export function TrackList({ tracks, label }: { tracks: any[]; label: string }) {
  if (!tracks.length) return <p class="muted">No tracks yet.</p>;
  const items: QueueItem[] = tracks.map((t) => ({ id: t.id, title: t.title, artist_name: t.artist_name }));
  return (
    <ol class="tracks" aria-label={label}>
      {tracks.map((t, i) => (
        <li key={t.id}>
          <button class="icon" aria-label={`Play ${t.title}`} onClick={() => void playQueue(items, i)}
                  disabled={t.status && t.status !== "ready"}>▶</button>
          <span class="grow">
            <Link to={`/track/${t.id}`}>{t.title}</Link>
            {t.artist_name && <> · <Link to={`/artist/${t.artist_id}`} class="muted">{t.artist_name}</Link></>}
          </span>
          {t.status && t.status !== "ready" && <span class="badge">{t.status}</span>}
          {t.duration_s ? <span class="muted">{fmtTime(t.duration_s)}</span> : null}
          <button class="icon" aria-label={`Add ${t.title} to the queue`} onClick={() => enqueue(items[i])}
                  disabled={t.status && t.status !== "ready"}>+</button>
        </li>
      ))}
    </ol>
  );
}
