/**
 * The room's shared document (Yjs through the stock y-websocket provider, docs/realtime.md): the
 * playlist (`Y.Array "playlist"` of {track, title}) and the notes (`Y.Text "notes"`). Host and
 * collaborators edit; listeners see every change live (their edits would be refused by the server).
 * yjs and y-websocket are loaded with the room, not with the app. A new `generation` opens a fresh
 * Y.Doc: after a demotion, an edit the server refused (typed just before the `role` event arrived)
 * would otherwise stay in the local doc, shown here but nowhere else.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { api, tokenValidFor } from "./api";

export interface PlaylistEntry { track: string; title?: string }

export interface RoomDocHandle {
  add(entry: PlaylistEntry): void;
  remove(index: number): void;
  move(from: number, to: number): void;
}

/** The smallest edit turning `before` into `after`: [index, deleted count, inserted text]. */
export function textDiff(before: string, after: string): [number, number, string] {
  let start = 0;
  while (start < before.length && start < after.length && before[start] === after[start]) start++;
  let endB = before.length, endA = after.length;
  while (endB > start && endA > start && before[endB - 1] === after[endA - 1]) { endB--; endA--; }
  return [start, endB - start, after.slice(start, endA)];
}

export function useRoomDoc(room: string, onReady: (h: RoomDocHandle | null) => void, generation = 0) {
  const [playlist, setPlaylist] = useState<PlaylistEntry[]>([]);
  const [notes, setNotes] = useState("");
  const [synced, setSynced] = useState(false);
  const text = useRef<any>(null);

  useEffect(() => {
    let provider: any = null;
    let live = true;
    (async () => {
      const [Y, { WebsocketProvider }] = await Promise.all([import("yjs"), import("y-websocket")]);
      const token = await tokenValidFor(60);
      const where = await api<{ documents: string }>("/v1/realtime");
      if (!live || !token) return;
      const doc = new Y.Doc();
      const list = doc.getArray<PlaylistEntry>("playlist");
      const notesText = doc.getText("notes");
      text.current = notesText;
      provider = new WebsocketProvider(where.documents, room, doc, { params: { token } });
      provider.on("sync", (ok: boolean) => {
        setSynced(ok);
        if (ok) { setPlaylist(list.toArray()); setNotes(notesText.toString()); }  // a re-opened doc may not change
      });
      list.observe(() => setPlaylist(list.toArray()));
      notesText.observe(() => setNotes(notesText.toString()));
      onReady({
        add: (e) => list.push([e]),
        remove: (i) => list.delete(i, 1),
        move: (from, to) => doc.transact(() => {
          const [item] = list.slice(from, from + 1);
          list.delete(from, 1);
          list.insert(to, [item]);
        }),
      });
    })().catch(() => undefined);
    return () => { live = false; onReady(null); provider?.destroy(); };
  }, [room, generation]);

  const editNotes = (value: string) => {
    const t = text.current;
    if (!t) return;
    const [at, deleted, inserted] = textDiff(t.toString(), value);
    t.doc.transact(() => {
      if (deleted) t.delete(at, deleted);
      if (inserted) t.insert(at, inserted);
    });
  };
  return { playlist, notes, synced, editNotes };
}
