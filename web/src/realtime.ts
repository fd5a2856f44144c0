/**
 * The realtime client (docs/realtime.md): one WebSocket to Serve's /v1/ws, authenticated with the
 * access token, re-authenticated before it expires, reconnected after a drop with each room's last
 * seen seq (`since`) so nothing is missed or repeated; chats carry a `ref` and are resent until
 * acknowledged; `time` probes estimate the server clock for synchronized listening.
 */
import { api, tokenValidFor } from "./api";

type Handler = (msg: any) => void;

class Realtime {
  private ws: WebSocket | null = null;
  private handlers = new Map<string, Set<Handler>>();
  private rooms = new Map<string, number | null>();  // room -> last seq processed
  private unacked = new Map<string, any>();           // ref -> chat message
  private opening: Promise<void> | null = null;
  private retry = 0;
  private bestRtt = Infinity;
  private reauthTimer = 0;
  private closedByUs = false;
  private holdUntil = 0;
  /** sockets opened so far (1 + reconnects) */
  opened = 0;
  /** server clock - local clock, in ms (NTP-style, smallest round trip wins) */
  offset = 0;
  connected = false;
  /** chat messages a room's history page holds (the tests make it small) */
  historyPageSize = 50;

  on(type: string, fn: Handler): () => void {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type)!.add(fn);
    return () => this.handlers.get(type)?.delete(fn);
  }

  private emit(msg: any): void {
    this.handlers.get(msg.type)?.forEach((fn) => fn(msg));
    this.handlers.get("*")?.forEach((fn) => fn(msg));
  }

  serverNow(): number { return Date.now() + this.offset; }

  async connect(): Promise<void> {
    if (this.connected) return;
    this.closedByUs = false;
    this.opening ??= this.open().finally(() => { this.opening = null; });
    return this.opening;
  }

  private async open(): Promise<void> {
    const token = await tokenValidFor(90);
    if (!token) throw new Error("sign in first");
    const where = await api<{ serve: string }>("/v1/realtime");
    const ws = new WebSocket(`${where.serve}?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    await new Promise<void>((resolve, reject) => {
      ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.type === "ready") {
          this.connected = true; this.retry = 0; this.opened++; resolve();
          this.afterReady(msg);
        }
        this.handle(msg);
      };
      ws.onclose = (ev) => {
        const wasConnected = this.connected;
        this.connected = false; this.ws = null;
        clearTimeout(this.reauthTimer);
        this.emit({ type: "connection", connected: false, code: ev.code });
        if (!wasConnected) reject(new Error(`WebSocket closed (${ev.code} ${ev.reason})`));
        if (!this.closedByUs && ev.code !== 4401) this.scheduleReconnect();
      };
    });
  }

  private afterReady(ready: any): void {
    this.emit({ type: "connection", connected: true });
    this.bestRtt = Infinity;
    for (let i = 0; i < 5; i++) setTimeout(() => this.send({ type: "time", id: i, t0: Date.now() }), i * 150);
    for (const [room, since] of this.rooms) this.send({ type: "join", room, ...(since !== null ? { since } : {}) });
    for (const msg of this.unacked.values()) this.send(msg);
    clearTimeout(this.reauthTimer);
    const lead = Math.max(1000, ready.expires_at - Date.now() - 30_000);
    this.reauthTimer = window.setTimeout(async () => {
      const token = await tokenValidFor(90);
      if (token) this.send({ type: "auth", token });
    }, lead);
  }

  private scheduleReconnect(): void {
    const delay = Math.max(Math.min(10_000, 250 * 2 ** this.retry++), this.holdUntil - Date.now());
    setTimeout(() => { this.connect().catch(() => undefined); }, delay);
  }

  private handle(msg: any): void {
    if (msg.type === "time") {
      const t1 = Date.now();
      const rtt = t1 - msg.t0;
      if (rtt < this.bestRtt) { this.bestRtt = rtt; this.offset = msg.server_ts - (msg.t0 + t1) / 2; }
      return;
    }
    if (msg.type === "authenticated") {
      clearTimeout(this.reauthTimer);
      const lead = Math.max(1000, msg.expires_at - Date.now() - 30_000);
      this.reauthTimer = window.setTimeout(async () => {
        const token = await tokenValidFor(90); if (token) this.send({ type: "auth", token });
      }, lead);
    }
    if (msg.room && typeof msg.seq === "number" && this.rooms.has(msg.room)) {
      const last = this.rooms.get(msg.room) ?? null;
      if (msg.type === "joined") {
        if (last === null) this.rooms.set(msg.room, msg.seq);  // a rejoin keeps its `since`: the backlog follows
      } else {
        if (last !== null && msg.seq <= last) return;  // already seen (a resent backlog entry)
        this.rooms.set(msg.room, msg.seq);
      }
    }
    if (msg.type === "chat" && msg.ref) this.unacked.delete(msg.ref);
    this.emit(msg);
  }

  send(msg: any): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /**
   * Join a room from now on: `joined` gives the room's seq, which later joins (after a reconnect) send
   * as `since` so nothing is missed. Its history is read over REST (`/v1/rooms/{id}/messages`), newest
   * first: a `since` of 0 would replay the OLDEST VERSEFLOW_ROOM_BACKLOG_MAX messages of a long room.
   */
  join(room: string): void {
    if (!this.rooms.has(room)) this.rooms.set(room, null);
    const since = this.rooms.get(room) ?? null;
    this.send({ type: "join", room, ...(since !== null ? { since } : {}) });
  }

  leave(room: string): void { this.rooms.delete(room); this.send({ type: "leave", room }); }

  chat(room: string, text: string): void {
    const ref = `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const msg = { type: "chat", room, text, ref };
    this.unacked.set(ref, msg);
    this.send(msg);
  }

  /** Drop the socket as a network failure would, staying away `offlineMs` (the reconnection test). */
  drop(offlineMs = 0): void { this.holdUntil = Date.now() + offlineMs; this.ws?.close(4999, "client drop"); }

  disconnect(): void { this.closedByUs = true; this.rooms.clear(); this.ws?.close(1000); }
}

export const realtime = new Realtime();
