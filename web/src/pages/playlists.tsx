/** Playlists: create, add from a track page, reorder by drag and drop or by keyboard, remove, play, collaborators. */
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { ErrorText, fmtTime } from "../components";
import { playQueue } from "../player";
import { Link, navigate } from "../router";
import { UserPicker, type UserRef } from "../userpicker";

export function PlaylistsPage() {
  const [lists, setLists] = useState<any[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => { api("/v1/me/playlists").then(setLists).catch((e) => setError(e.message)); }, []);
  const create = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    try {
      const p = await api("/v1/playlists", { method: "POST", json: { name: f.get("name"), public: !!f.get("public") } });
      navigate(`/playlist/${p.id}`);
    } catch (err: any) { setError(err.message); }
  };
  return (
    <section aria-labelledby="playlists-title">
      <h1 id="playlists-title">Playlists</h1>
      <ErrorText error={error} />
      <ul class="plain" aria-label="Your playlists">
        {(lists ?? []).map((p) => <li key={p.id}><Link to={`/playlist/${p.id}`}>{p.name}</Link>
          {!p.owned && <span class="muted"> (shared with you)</span>}</li>)}
      </ul>
      <form class="card" onSubmit={create}>
        <h2>New playlist</h2>
        <label>Playlist name<input name="name" required maxLength={200} /></label>
        <label class="check"><input name="public" type="checkbox" /> Public</label>
        <button class="primary" type="submit">Create playlist</button>
      </form>
    </section>
  );
}

export function PlaylistPage({ id, me }: { id: string; me: any }) {
  const [list, setList] = useState<any>(null);
  const [error, setError] = useState<string | null>(null);
  const [dragged, setDragged] = useState<number | null>(null);
  const [status, setStatus] = useState("");
  const reload = () => api(`/v1/playlists/${id}`).then(setList).catch((e) => setError(e.message));
  useEffect(() => { void reload(); }, [id]);

  const move = async (from: number, to: number) => {
    const tracks = list.tracks;
    if (to < 0 || to >= tracks.length || from === to) return;
    const entry = tracks[from];
    const next = [...tracks];
    next.splice(from, 1); next.splice(to, 0, entry);
    setList({ ...list, tracks: next });  // at once; the server's order follows
    try {
      await api(`/v1/playlists/${id}/tracks/${entry.entry_id}`, { method: "PATCH", json: { position: to } });
      setStatus(`${entry.title} moved to position ${to + 1} of ${tracks.length}`);
    } catch (e: any) { setError(e.message); }
    await reload();
    requestAnimationFrame(() => (document.querySelector(`[data-entry="${entry.entry_id}"]`) as HTMLElement | null)?.focus());
  };
  const remove = async (entry: any) => {
    try { await api(`/v1/playlists/${id}/tracks/${entry.entry_id}`, { method: "DELETE" }); } catch (e: any) { setError(e.message); }
    await reload();
  };

  if (error && !list) return <ErrorText error={error} />;
  if (!list) return <p aria-busy="true">Loading…</p>;
  const items = list.tracks.map((t: any) => ({ id: t.id, title: t.title, artist_name: t.artist_name }));
  return (
    <section aria-labelledby="playlist-title">
      <h1 id="playlist-title">{list.name}</h1>
      <ErrorText error={error} />
      <p class="row">
        <button class="primary" disabled={!items.length} onClick={() => void playQueue(items)}>Play all</button>
        <span class="muted">{list.public ? "Public" : "Private"} · {list.tracks.length} tracks ·
          drag a row, or focus it and press Alt+↑ / Alt+↓, to reorder</span>
      </p>
      <p class="sr-only" aria-live="polite">{status}</p>
      <ol class="tracks" aria-label="Playlist tracks">
        {list.tracks.map((t: any, i: number) => (
          <li key={t.entry_id} data-entry={t.entry_id} tabIndex={0} draggable
              aria-label={`${t.title}, position ${i + 1} of ${list.tracks.length}`}
              class={dragged === i ? "dragging" : undefined}
              onDragStart={(e) => { setDragged(i); e.dataTransfer?.setData("text/plain", String(i)); }}
              onDragOver={(e) => e.preventDefault()}
              onDrop={(e) => { e.preventDefault(); const from = Number(e.dataTransfer?.getData("text/plain")); setDragged(null); void move(from, i); }}
              onDragEnd={() => setDragged(null)}
              onKeyDown={(e) => {
                if (e.altKey && e.key === "ArrowUp") { e.preventDefault(); void move(i, i - 1); }
                if (e.altKey && e.key === "ArrowDown") { e.preventDefault(); void move(i, i + 1); }
              }}>
            <span class="handle" aria-hidden="true">⋮⋮</span>
            <span class="grow"><Link to={`/track/${t.id}`}>{t.title}</Link> · <span class="muted">{t.artist_name}</span></span>
            {t.duration_s ? <span class="muted">{fmtTime(t.duration_s)}</span> : null}
            <button class="icon" aria-label={`Move ${t.title} up`} disabled={i === 0} onClick={() => void move(i, i - 1)}>↑</button>
            <button class="icon" aria-label={`Move ${t.title} down`} disabled={i === list.tracks.length - 1}
                    onClick={() => void move(i, i + 1)}>↓</button>
            <button class="icon" aria-label={`Remove ${t.title} from the playlist`} onClick={() => void remove(t)}>×</button>
          </li>
        ))}
      </ol>
      <Collaborators playlist={list} me={me} onChange={() => void reload()} />
    </section>
  );
}

/** Who may add, move and remove tracks besides the owner; the owner finds people by name to add them. */
function Collaborators({ playlist, me, onChange }: { playlist: any; me: any; onChange: () => void }) {
  const [names, setNames] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState("");
  const owner = playlist.owner_id === me.id || me.role === "admin";
  useEffect(() => {
    for (const u of playlist.collaborators as string[]) {
      if (names[u]) continue;
      api(`/v1/users/${u}`).then((p) => setNames((n) => ({ ...n, [u]: p.display_name }))).catch(() => undefined);
    }
  }, [playlist.collaborators]);
  const set = async (user: UserRef, present: boolean) => {
    setError(null);
    try {
      await api(`/v1/playlists/${playlist.id}/collaborators/${user.id}`, { method: present ? "PUT" : "DELETE" });
      setNames((n) => ({ ...n, [user.id]: user.display_name }));
      setStatus(`${user.display_name} ${present ? "can now edit" : "can no longer edit"} this playlist.`);
      onChange();
    } catch (e: any) { setError(e.status === 404 ? "No such user." : e.message); }
  };
  const list: string[] = playlist.collaborators;
  return (
    <div class="card">
      <h2>Collaborators</h2>
      <ErrorText error={error} />
      <p class="sr-only" role="status">{status}</p>
      {!list.length && <p class="muted">Only the owner edits this playlist.</p>}
      {list.length > 0 && (
        <ul class="plain" aria-label="Collaborators">
          {list.map((u) => (
            <li key={u}>{u === me.id ? "You" : names[u] ?? "…"}
              {owner && <> <button class="link"
                                   onClick={() => void set({ id: u, display_name: names[u] ?? "The collaborator" }, false)}>
                Remove {names[u] ?? "collaborator"}</button></>}</li>))}
        </ul>)}
      {owner && <UserPicker label="Add a collaborator by name" exclude={[playlist.owner_id, me.id, ...list]}
                            onPick={(u) => void set(u, true)} />}
    </div>
  );
}

/** On a track page: add the track to one of your playlists. */
export function AddToPlaylist({ trackId }: { trackId: string }) {
  const [lists, setLists] = useState<any[]>([]);
  const [target, setTarget] = useState("");
  const [done, setDone] = useState<string | null>(null);
  useEffect(() => { api<any[]>("/v1/me/playlists").then((l) => { setLists(l); if (l[0]) setTarget(l[0].id); }).catch(() => undefined); }, []);
  if (!lists.length) return null;
  const add = async (e: Event) => {
    e.preventDefault();
    try {
      await api(`/v1/playlists/${target}/tracks`, { method: "POST", json: { track_id: trackId } });
      setDone(`Added to ${lists.find((l) => l.id === target)?.name}`);
    } catch (err: any) { setDone(err.message); }
  };
  return (
    <form class="row" onSubmit={add}>
      <label>Playlist
        <select value={target} onChange={(e) => setTarget((e.target as HTMLSelectElement).value)}>
          {lists.map((l) => <option key={l.id} value={l.id}>{l.name}</option>)}
        </select></label>
      <button type="submit">Add to playlist</button>
      {done && <span role="status">{done}</span>}
    </form>
  );
}
