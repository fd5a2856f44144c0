/**
 * Live rooms: create or open one; in a room, chat with history, who is online, listening together,
 * and the shared playlist and notes. The host makes members editors (the API's room role
 * "collaborator") and back; a `role` event turns the member's page editable or read-only at once.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api";
import { ErrorText } from "../components";
import { load } from "../player";
import { realtime } from "../realtime";
import { navigate } from "../router";
import { type RoomDocHandle, useRoomDoc } from "../roomdoc";
import { RoomSync } from "../sync";

export function RoomsPage() {
  const [error, setError] = useState<string | null>(null);
  const create = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    try {
      const room = await api("/v1/rooms", { method: "POST", json: { name: f.get("name"), visibility: f.get("visibility") } });
      navigate(`/room/${room.id}`);
    } catch (err: any) { setError(err.message); }
  };
  const open = (e: Event) => {
    e.preventDefault();
    const raw = String(new FormData(e.currentTarget as HTMLFormElement).get("room")).trim();
    const id = raw.match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i)?.[0];
    if (id) navigate(`/room/${id}`); else setError("Paste a room link or id.");
  };
  return (
    <section aria-labelledby="rooms-title">
      <h1 id="rooms-title">Live rooms</h1>
      <p class="muted">Chat, and hear the same moment of the same track: the host plays, everyone follows.</p>
      <ErrorText error={error} />
      <form class="card" onSubmit={create}>
        <h2>Start a room</h2>
        <label>Room name<input name="name" required maxLength={200} /></label>
        <label>Who can join
          <select name="visibility"><option value="public">Anyone with the link</option>
            <option value="private">Only people I invite</option></select></label>
        <button class="primary" type="submit">Create room</button>
      </form>
      <form class="card" onSubmit={open}>
        <h2>Join a room</h2>
        <label>Room link or id<input name="room" required /></label>
        <button type="submit">Join</button>
      </form>
    </section>
  );
}

interface Chat { seq: number; from: string; text: string; ts: number }

/** A room role as the page names it: the API's "collaborator" edits the playlist and notes. */
const ROLE_NAMES: Record<string, string> = { host: "host", collaborator: "editor", listener: "listener" };
const roleName = (role: string) => ROLE_NAMES[role] ?? role;
const canEdit = (role: string | null) => role === "host" || role === "collaborator";

/** `add` merged into `chats`: each seq once, in seq order. */
function merged(chats: Chat[], add: Chat[]): Chat[] {
  const bySeq = new Map(chats.map((c) => [c.seq, c]));
  for (const c of add) bySeq.set(c.seq, { seq: c.seq, from: c.from, text: c.text, ts: c.ts });
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

export function RoomPage({ id, me }: { id: string; me: any }) {
  const [room, setRoom] = useState<any>(null);
  const [role, setRole] = useState<string | null>(null);
  const [chats, setChats] = useState<Chat[]>([]);
  const [online, setOnline] = useState<Map<string, string>>(new Map());
  const [names, setNames] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [connected, setConnected] = useState(realtime.connected);
  const [hits, setHits] = useState<any[]>([]);
  const [older, setOlder] = useState<number | null>(null);  // `before` for the page above the first shown
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [notice, setNotice] = useState("");  // role changes, announced politely
  const [changing, setChanging] = useState<string | null>(null);  // the member whose role is being changed
  const lastSeq = useRef(0);
  const keepScroll = useRef<number | null>(null);  // scrollHeight before older messages were put on top
  const roleRef = useRef<string | null>(null);
  const sync = useRef<RoomSync | null>(null);
  const log = useRef<HTMLOListElement>(null);
  const docHandle = useRef<RoomDocHandle | null>(null);
  const [docGeneration, setDocGeneration] = useState(0);  // a new one re-opens the room document
  const shared = useRoomDoc(id, (h) => { docHandle.current = h; }, docGeneration);
  const editor = canEdit(role);

  useEffect(() => {
    api(`/v1/rooms/${id}`).then((r) => {
      setRoom(r);
      setNames((n) => ({ ...n, ...Object.fromEntries(r.members.filter((m: any) => m.display_name).map((m: any) => [m.user_id, m.display_name])) }));
    }).catch((e) => setError(e.message));
    let joinedSeq = Number.MAX_SAFE_INTEGER;
    let historyRead = false;
    setChats([]); setOlder(null);
    // The newest page of the history, up to what `joined` said: later messages arrive on the socket.
    const readHistory = (upTo: number) => {
      historyRead = true;
      api(`/v1/rooms/${id}/messages?before=${upTo + 1}&limit=${realtime.historyPageSize}`).then((page) => {
        setChats((c) => merged(c, page.items));
        setOlder(page.older);
      }).catch((e) => setError(e.message));
    };
    roleRef.current = null;
    /** My role, from `joined` or a `role` event (a `role` missed while offline arrives as the rejoin's `joined`). */
    const applyMyRole = (next: string) => {
      const before = roleRef.current;
      roleRef.current = next; setRole(next);
      if (before === null || before === next) return;
      if (canEdit(before) && !canEdit(next)) setDocGeneration((g) => g + 1);  // drops edits the server refused
      setNotice(canEdit(next) ? "The host made you an editor: you can change the room playlist and notes."
        : "You are a listener now: the room playlist and notes are read-only for you.");
    };
    const s = new RoomSync(id, () => roleRef.current === "host");
    sync.current = s;
    s.start();
    const offs = [
      realtime.on("connection", (m) => setConnected(m.connected)),
      realtime.on("joined", (m) => {
        if (m.room !== id) return;
        joinedSeq = m.seq;
        if (!historyRead || m.truncated) readHistory(m.seq);  // truncated: a reconnect missed too much to replay
        applyMyRole(m.role);
        setOnline(new Map(m.members.map((x: any) => [x.user, x.role])));
        void s.apply(m.transport ? { ...m.transport, server_ts: m.transport.server_ts } : null);
      }),
      realtime.on("chat", (m) => {
        if (m.room !== id) return;
        setChats((c) => c.some((x) => x.seq === m.seq) ? c : merged(c, [m]));
      }),
      realtime.on("role", (m) => {
        if (m.room !== id) return;
        setOnline((prev) => prev.has(m.user) ? new Map(prev).set(m.user, m.role) : prev);
        if (m.user === me.id) applyMyRole(m.role);
      }),
      realtime.on("presence", (m) => {
        if (m.room !== id) return;
        setOnline((prev) => {
          const next = new Map(prev);
          for (const j of m.joins ?? []) next.set(j.user, j.role);
          for (const l of m.leaves ?? []) next.delete(l);
          return next;
        });
      }),
      // The history replayed after `joined` holds old transports: `joined.transport` is already the latest.
      realtime.on("transport", (m) => { if (m.room === id && m.seq > joinedSeq) void s.apply(m); }),
      realtime.on("error", (m) => { if (!m.room || m.room === id) setError(`${m.code}: ${m.message}`); }),
    ];
    realtime.join(id);  // sent now if connected, else once the socket is ready (and after every reconnect)
    realtime.connect().then(() => setConnected(true)).catch((e) => setError(e.message));
    return () => { offs.forEach((f) => f()); s.stop(); realtime.leave(id); };
  }, [id]);

  // Names for whoever speaks or is online.
  useEffect(() => {
    const unknown = new Set([...chats.map((c) => c.from), ...online.keys()].filter((u) => !names[u]));
    unknown.forEach((u) => {
      setNames((n) => ({ ...n, [u]: n[u] ?? "…" }));
      api(`/v1/users/${u}`).then((p) => setNames((n) => ({ ...n, [u]: p.display_name }))).catch(() => undefined);
    });
  }, [chats, online]);

  // A new last message scrolls into view; older ones put on top keep what was on screen in place.
  useEffect(() => {
    const el = log.current;
    if (!el) return;
    if (keepScroll.current !== null) { el.scrollTop += el.scrollHeight - keepScroll.current; keepScroll.current = null; }
    const last = chats.length ? chats[chats.length - 1].seq : 0;
    if (last !== lastSeq.current) { lastSeq.current = last; el.scrollTop = el.scrollHeight; }
  }, [chats]);

  const loadOlder = async () => {
    if (older === null || loadingOlder) return;
    setLoadingOlder(true);
    try {
      const page = await api(`/v1/rooms/${id}/messages?before=${older}&limit=${realtime.historyPageSize}`);
      keepScroll.current = log.current?.scrollHeight ?? null;
      setChats((c) => merged(c, page.items));
      setOlder(page.older);
    } catch (e: any) { setError(e.message); } finally { setLoadingOlder(false); }
  };

  const send = (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const text = String(new FormData(form).get("text")).trim();
    if (!text) return;
    realtime.chat(id, text);
    form.reset();
  };

  const find = async (q: string) => {
    if (!q.trim()) { setHits([]); return; }
    try { setHits((await api(`/v1/search?q=${encodeURIComponent(q)}&type=track&limit=8`)).items); } catch { setHits([]); }
  };

  const playForRoom = async (trackId: string) => { await load(trackId, true); };

  /** Host only: make a member an editor or a listener. Their sockets follow at once (a `role` event). */
  const setMemberRole = async (user: string, next: "collaborator" | "listener") => {
    setChanging(user); setError(null);
    try {
      await api(`/v1/rooms/${id}/members/${user}`, { method: "PUT", json: { role: next } });
      setOnline((prev) => prev.has(user) ? new Map(prev).set(user, next) : prev);
      const name = names[user] ?? "They";
      setNotice(next === "collaborator" ? `${name} can now change the room playlist and notes.`
        : `${name} is a listener now: the room playlist and notes are read-only for them.`);
    } catch (e: any) { setError(e.message); } finally { setChanging(null); }
  };

  const link = `${location.origin}/app/room/${id}`;
  return (
    <section aria-labelledby="room-title" class="room">
      <h1 id="room-title">{room?.name ?? "Room"}</h1>
      <p class="muted">
        {connected ? "Live" : "Connecting…"} · you are the <span data-testid="room-role">{role ? roleName(role) : "…"}</span> ·
        share <code>{link}</code>
      </p>
      <ErrorText error={error} />
      <p role="status" class="muted">{notice}</p>
      <div class="room-grid">
        <div>
          <h2>Chat</h2>
          {older !== null && (
            <button type="button" class="link" onClick={() => void loadOlder()} disabled={loadingOlder}>
              {loadingOlder ? "Loading older messages…" : "Load older messages"}</button>)}
          <ol class="chat" ref={log} aria-label="Chat messages" aria-live="polite" tabIndex={0}
              onScroll={(e) => { if ((e.currentTarget as HTMLElement).scrollTop < 8) void loadOlder(); }}>
            {chats.map((c) => (
              <li key={c.seq}><strong>{c.from === me.id ? "You" : names[c.from] ?? "…"}</strong>: {c.text}</li>
            ))}
          </ol>
          <form class="row" onSubmit={send}>
            <label class="grow">Message<input name="text" maxLength={2000} autoComplete="off" /></label>
            <button type="submit" class="primary">Send</button>
          </form>
        </div>
        <aside>
          <h2>Online (<span data-testid="online-count">{online.size}</span>)</h2>
          <ul class="plain" aria-label="Online members">
            {[...online].map(([u, r]) => {
              const name = u === me.id ? "You" : names[u] ?? "…";
              const next = r === "listener" ? "collaborator" : "listener";
              return (
                <li key={u}>{name} <span class="muted">{roleName(r)}</span>
                  {role === "host" && u !== me.id && r !== "host" && (
                    <> <button type="button" class="link" disabled={changing === u}
                               aria-label={`Make ${roleName(next)}: ${name}`}
                               onClick={() => void setMemberRole(u, next)}>Make {roleName(next)}</button></>)}
                </li>
              );
            })}
          </ul>
          <h2>Listening together</h2>
          <p class="muted">{role === "host" ? "What you play, pause and seek, everyone here hears."
            : "The host chooses what plays; your player follows."}</p>
          {editor && (
            <>
              <label>{role === "host" ? "Find a track to play for the room" : "Find a track for the room playlist"}
                <input type="search" onInput={(e) => void find((e.target as HTMLInputElement).value)} /></label>
              <ul class="plain">
                {hits.map((h) => (
                  <li key={h.id}>
                    {role === "host" && <>
                      <button class="link" onClick={() => void playForRoom(h.id)}>Play “{h.title}” for the room</button>
                      {" · "}
                    </>}
                    <button class="link" onClick={() => docHandle.current?.add({ track: h.id, title: h.title })}>
                      Add “{h.title}” to the room playlist</button>
                  </li>
                ))}
              </ul>
            </>
          )}
          <h2>Room playlist</h2>
          {!shared.playlist.length && <p class="muted">Empty{editor ? ": add tracks above." : "."}</p>}
          <ol aria-label="Room playlist">
            {shared.playlist.map((e, i) => (
              <li key={`${e.track}-${i}`}>
                {e.title ?? e.track}
                {role === "host" && <button class="icon" aria-label={`Play ${e.title} for the room`}
                                            onClick={() => void playForRoom(e.track)}>▶</button>}
                {editor && <>
                  <button class="icon" aria-label={`Move ${e.title} up`} disabled={i === 0}
                          onClick={() => docHandle.current?.move(i, i - 1)}>↑</button>
                  <button class="icon" aria-label={`Remove ${e.title} from the room playlist`}
                          onClick={() => docHandle.current?.remove(i)}>×</button>
                </>}
              </li>
            ))}
          </ol>
          <label>Room notes{editor ? "" : " (the host and editors write here)"}
            <textarea rows={5} value={shared.notes} readOnly={!editor}
                      onInput={(e) => shared.editNotes((e.target as HTMLTextAreaElement).value)} /></label>
        </aside>
      </div>
    </section>
  );
}
