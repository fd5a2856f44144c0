/**
 * The player: one <audio> element, hls.js (loaded on first play) for adaptive HLS with the MP3 as
 * the fallback, a Web Audio gain node for loudness normalisation (to -14 LUFS, never past -1 dBTP),
 * a queue, the Media Session (lock screen and media keys) and plays reported to /v1/plays.
 */
import { api } from "./api";
import { Store } from "./store";

export interface QueueItem { id: string; title: string; artist_name?: string | null }

export interface PlayerState {
  queue: QueueItem[];
  index: number;
  track: any | null;          // GET /v1/tracks/{id}
  playing: boolean;
  position: number;           // seconds
  duration: number;
  rung: string | null;        // the HLS rendition in use, or the MP3's
  engine: "hls.js" | "native-hls" | "mp3" | null;
  gainDb: number;
  error: string | null;
}

const PROGRESS_EVERY_S = 15;
const PEAK_CEILING_DBTP = -1;

export const audio = document.createElement("audio");
audio.id = "vf-audio";
audio.preload = "auto";
audio.hidden = true;
document.body.appendChild(audio);

export const player = new Store<PlayerState>({
  queue: [], index: -1, track: null, playing: false, position: 0, duration: 0,
  rung: null, engine: null, gainDb: 0, error: null,
});

let hls: any = null;
let context: AudioContext | null = null;
let gainNode: GainNode | null = null;
let play: { id: string; track: string; lastReport: number; started: boolean } | null = null;
let loadToken = 0;

function uuid(): string {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The normalisation gain in dB from the track's analysis: to -14 LUFS, limited by the true peak. */
export function normalisationGainDb(analysis: any): number {
  const loud = analysis?.loudness;
  if (!loud || typeof loud.gain_db_to_minus_14 !== "number") return 0;
  let gain = loud.gain_db_to_minus_14;
  if (typeof loud.true_peak_dbtp === "number") gain = Math.min(gain, PEAK_CEILING_DBTP - loud.true_peak_dbtp);
  return Math.max(-24, Math.min(12, gain));
}

function ensureAudioGraph(): void {
  if (context) return;
  try {
    context = new AudioContext();
    gainNode = context.createGain();
    context.createMediaElementSource(audio).connect(gainNode).connect(context.destination);
  } catch { context = null; gainNode = null; }  // no Web Audio: plays unnormalised
}

function applyGain(db: number): void {
  if (gainNode && context) gainNode.gain.setValueAtTime(Math.pow(10, db / 20), context.currentTime);
}

async function report(event: "start" | "progress" | "complete"): Promise<void> {
  if (!play) return;
  const body = { track_id: play.track, play_id: play.id, event,
                 position_ms: Math.max(0, Math.round(audio.currentTime * 1000)),
                 rung: player.get().rung ?? undefined };
  try { await api("/v1/plays", { method: "POST", json: body }); } catch { /* best effort */ }
}

function rungFromUrl(url: string | undefined): string | null {
  const m = url?.match(/([a-z0-9_]+)\.m3u8/);
  return m ? m[1] : null;
}

function destroyHls(): void { if (hls) { hls.destroy(); hls = null; } }

/** Load a track into the element (does not start it unless `autoplay`). Resolves once metadata is in. */
export async function load(id: string, autoplay = true, startAt = 0): Promise<void> {
  const token = ++loadToken;
  ensureAudioGraph();
  const track = await api(`/v1/tracks/${id}`);
  if (token !== loadToken) return;
  const streams = track.streams;
  if (!streams) { player.update({ error: "This track cannot be streamed yet." }); return; }
  destroyHls();
  play = { id: uuid(), track: id, lastReport: 0, started: false };
  const gainDb = normalisationGainDb(track.analysis);
  applyGain(gainDb);
  player.update({ track, error: null, gainDb, position: startAt, duration: track.duration_s ?? 0 });
  const mp3 = streams.mp3?.mp3_128 ?? Object.values(streams.mp3 ?? {})[0];
  const canMse = "MediaSource" in window || "ManagedMediaSource" in window;
  if (canMse) {
    const { default: Hls } = await import("hls.js");
    if (token !== loadToken) return;
    if (Hls.isSupported()) {
      hls = new Hls({ startPosition: startAt, maxBufferLength: 30 });
      hls.on(Hls.Events.LEVEL_SWITCHED, (_: unknown, data: any) => {
        player.update({ rung: rungFromUrl(hls?.levels?.[data.level]?.url?.[0] ?? hls?.levels?.[data.level]?.uri) });
      });
      hls.on(Hls.Events.ERROR, (_: unknown, data: any) => {
        if (data.fatal) {
          destroyHls();
          if (mp3) { audio.src = mp3; player.update({ engine: "mp3", rung: "mp3_128" }); void audio.play(); }
          else player.update({ error: `Playback failed: ${data.details}` });
        }
      });
      hls.loadSource(streams.hls);
      hls.attachMedia(audio);
      player.update({ engine: "hls.js", rung: null });
    }
  }
  if (!hls) {
    if (audio.canPlayType("application/vnd.apple.mpegurl")) {
      audio.src = streams.hls; player.update({ engine: "native-hls", rung: "hls" });
    } else {
      audio.src = mp3; player.update({ engine: "mp3", rung: "mp3_128" });
    }
    if (startAt) audio.currentTime = startAt;
  }
  setMediaSession(track);
  if (autoplay) await resume();
}

export async function resume(): Promise<void> {
  ensureAudioGraph();
  if (context?.state === "suspended") await context.resume().catch(() => undefined);
  try { await audio.play(); } catch (e: any) {
    if (e?.name !== "AbortError") player.update({ error: `Playback blocked: ${e?.message ?? e}` });
  }
}

export function pause(): void { audio.pause(); }
export function toggle(): void { if (audio.paused) void resume(); else pause(); }
export function seek(seconds: number): void {
  const d = player.get().duration || audio.duration || 0;
  audio.currentTime = Math.max(0, d ? Math.min(seconds, d - 0.05) : seconds);
}

/** Replace the queue and start at `index`. */
export async function playQueue(items: QueueItem[], index = 0): Promise<void> {
  player.update({ queue: items, index });
  await load(items[index].id);
}

export function enqueue(item: QueueItem): void {
  const s = player.get();
  player.update({ queue: [...s.queue, item] });
  if (s.index < 0) void playQueue(player.get().queue, player.get().queue.length - 1);
}

export function removeAt(i: number): void {
  const s = player.get();
  const queue = s.queue.filter((_, j) => j !== i);
  player.update({ queue, index: i < s.index ? s.index - 1 : s.index });
}

export async function skip(delta: number): Promise<void> {
  const s = player.get();
  const next = s.index + delta;
  if (next < 0 || next >= s.queue.length) return;
  player.update({ index: next });
  await load(s.queue[next].id);
}

function setMediaSession(track: any): void {
  if (!("mediaSession" in navigator)) return;
  navigator.mediaSession.metadata = new MediaMetadata({
    title: track.title, artist: track.artist_name ?? "", album: track.album_title ?? "",
  });
}

if ("mediaSession" in navigator) {
  const ms = navigator.mediaSession;
  const handlers: [MediaSessionAction, MediaSessionActionHandler][] = [
    ["play", () => void resume()],
    ["pause", () => pause()],
    ["previoustrack", () => void skip(-1)],
    ["nexttrack", () => void skip(1)],
    ["seekbackward", (d) => seek(audio.currentTime - (d.seekOffset ?? 10))],
    ["seekforward", (d) => seek(audio.currentTime + (d.seekOffset ?? 10))],
    ["seekto", (d) => { if (d.seekTime !== undefined) seek(d.seekTime); }],
  ];
  for (const [action, fn] of handlers) { try { ms.setActionHandler(action, fn); } catch { /* unsupported */ } }
}

audio.addEventListener("playing", () => {
  player.update({ playing: true });
  if (play && !play.started) { play.started = true; play.lastReport = audio.currentTime; void report("start"); }
  if ("mediaSession" in navigator) navigator.mediaSession.playbackState = "playing";
});
audio.addEventListener("pause", () => {
  player.update({ playing: false });
  if ("mediaSession" in navigator) navigator.mediaSession.playbackState = "paused";
});
audio.addEventListener("timeupdate", () => {
  const duration = Number.isFinite(audio.duration) ? audio.duration : player.get().duration;
  player.update({ position: audio.currentTime, duration });
  if (play?.started && Math.abs(audio.currentTime - play.lastReport) >= PROGRESS_EVERY_S) {
    play.lastReport = audio.currentTime; void report("progress");
  }
  if ("mediaSession" in navigator && duration > 0 && navigator.mediaSession.setPositionState) {
    try {
      navigator.mediaSession.setPositionState({ duration, position: Math.min(audio.currentTime, duration),
                                                playbackRate: audio.playbackRate || 1 });
    } catch { /* position past a not-yet-known duration */ }
  }
});
audio.addEventListener("ended", () => {
  void report("complete");
  play = null;
  void skip(1);
});
audio.addEventListener("error", () => {
  if (!hls && audio.error) player.update({ error: `Playback failed (code ${audio.error.code})` });
});
