/**
 * Synchronized listening in a room (docs/realtime.md): the host's player is the source of truth and
 * its play, pause and seek go out as `transport`; members follow the transport stamped with server
 * time, corrected for the clock offset, seeking on large drift and nudging the playback rate on small.
 */
import { audio, load, pause, player, resume } from "./player";
import { realtime } from "./realtime";

export interface Transport { track_id: string | null; position_ms: number; playing: boolean; rate: number; server_ts: number }

const SEEK_ABOVE_MS = 800;     // farther off than this: jump
const NUDGE_ABOVE_MS = 25;     // closer than this: leave it
const MAX_NUDGE = 0.08;        // playback rate 0.92..1.08 while catching up
const HOST_RESYNC_MS = 150;    // a host stalled this far behind its own transport sends a fresh one

export function expectedMs(t: Transport, serverNow: number): number {
  return t.playing ? t.position_ms + Math.max(0, serverNow - t.server_ts) * (t.rate || 1) : t.position_ms;
}

export class RoomSync {
  private transport: Transport | null = null;
  private timer = 0;
  private loading: string | null = null;
  private seekLatencyMs = 0;
  private detach: (() => void)[] = [];

  constructor(private room: string, private isHost: () => boolean) {}

  start(): void {
    this.timer = window.setInterval(() => this.tick(), 250);
    const hostEvent = () => { if (this.isHost() && player.get().track) this.announce(); };
    for (const ev of ["play", "pause", "seeked"]) {
      audio.addEventListener(ev, hostEvent);
      this.detach.push(() => audio.removeEventListener(ev, hostEvent));
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.detach.forEach((f) => f());
    audio.playbackRate = 1;
  }

  /** Host: tell the room what plays now and where. */
  announce(): void {
    const track = player.get().track;
    if (!track) return;
    const t = { track_id: track.id, position_ms: Math.round(audio.currentTime * 1000), playing: !audio.paused, rate: 1 };
    this.transport = { ...t, server_ts: realtime.serverNow() };
    realtime.send({ type: "transport", room: this.room, ...t });
  }

  /** A transport from the room (joined.transport or a live one). */
  async apply(t: Transport | null): Promise<void> {
    if (!t) return;
    this.transport = t;
    if (this.isHost()) return;
    if (t.track_id && player.get().track?.id !== t.track_id && this.loading !== t.track_id) {
      this.loading = t.track_id;
      try { await load(t.track_id, false, expectedMs(t, realtime.serverNow()) / 1000); }
      finally { this.loading = null; }
    }
    this.tick();
  }

  private tick(): void {
    const t = this.transport;
    if (!t || !t.track_id || this.loading) return;
    if (this.isHost()) {
      if (!audio.paused && !audio.seeking && Math.abs(audio.currentTime * 1000 - expectedMs(t, realtime.serverNow())) > HOST_RESYNC_MS) {
        this.announce();
      }
      return;
    }
    if (player.get().track?.id !== t.track_id) return;
    const expected = expectedMs(t, realtime.serverNow());
    if (!t.playing) {
      if (!audio.paused) pause();
      if (Math.abs(audio.currentTime * 1000 - expected) > NUDGE_ABOVE_MS) audio.currentTime = expected / 1000;
      return;
    }
    if (audio.seeking) return;
    const drift = audio.currentTime * 1000 - expected;
    if (audio.paused || Math.abs(drift) > SEEK_ABOVE_MS) {
      const started = performance.now();
      audio.currentTime = (expected + this.seekLatencyMs) / 1000;
      audio.addEventListener("seeked", () => {
        this.seekLatencyMs = Math.min(1500, 0.5 * this.seekLatencyMs + 0.5 * (performance.now() - started));
      }, { once: true });
      audio.playbackRate = 1;
      if (audio.paused) void resume();
      return;
    }
    audio.playbackRate = Math.abs(drift) > NUDGE_ABOVE_MS ? 1 - Math.max(-MAX_NUDGE, Math.min(MAX_NUDGE, drift / 2000)) : 1;
  }
}
