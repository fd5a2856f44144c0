/**
 * The seek bar: the track's waveform (audiowaveform JSON from /v1/tracks/{id}/waveform) drawn on a
 * canvas, the played part in the accent colour. A slider for assistive technology and the keyboard
 * (arrows ±5 s, Page keys ±30 s, Home/End); a click or drag seeks.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "./api";
import { fmtTime } from "./components";

const BARS = 240;

/** Peaks (0..1) in `bars` columns from audiowaveform data ([min, max] pairs, 8-bit). */
export function peaks(doc: any, bars = BARS): number[] {
  const data: number[] = doc?.data ?? [];
  const n = Math.floor(data.length / 2);
  if (!n) return [];
  const out = new Array(bars).fill(0);
  for (let i = 0; i < n; i++) {
    const b = Math.min(bars - 1, Math.floor((i * bars) / n));
    out[b] = Math.max(out[b], Math.abs(data[2 * i]), Math.abs(data[2 * i + 1]));
  }
  const top = Math.max(1, ...out);
  return out.map((v) => v / top);
}

export function Waveform({ trackId, position, duration, onSeek }:
  { trackId: string; position: number; duration: number; onSeek: (s: number) => void }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [bars, setBars] = useState<number[]>([]);

  useEffect(() => {
    let live = true;
    setBars([]);
    api(`/v1/tracks/${trackId}/waveform?zoom=1024`).then((doc) => { if (live) setBars(peaks(doc)); })
      .catch(() => { if (live) setBars([]); });
    return () => { live = false; };
  }, [trackId]);

  useEffect(() => {
    const c = canvas.current;
    if (!c) return;
    const ratio = window.devicePixelRatio || 1;
    const w = c.clientWidth * ratio, h = c.clientHeight * ratio;
    c.width = w; c.height = h;
    const g = c.getContext("2d")!;
    g.clearRect(0, 0, w, h);
    const shown = bars.length ? bars : new Array(BARS).fill(0.04);
    const bw = w / shown.length;
    const played = duration > 0 ? position / duration : 0;
    const styles = getComputedStyle(c);
    shown.forEach((v, i) => {
      g.fillStyle = i / shown.length < played ? styles.getPropertyValue("--accent") || "#7c5cff"
                                              : styles.getPropertyValue("--wave") || "#8888";
      const bh = Math.max(ratio, v * h * 0.95);
      g.fillRect(i * bw, (h - bh) / 2, Math.max(1, bw - ratio), bh);
    });
  }, [bars, position, duration]);

  const seekFromPointer = (e: PointerEvent) => {
    const rect = (e.currentTarget as HTMLElement).getBoundingClientRect();
    if (duration > 0) onSeek(Math.max(0, Math.min(1, (e.clientX - rect.left) / rect.width)) * duration);
  };
  const onKey = (e: KeyboardEvent) => {
    const step: Record<string, number> = { ArrowRight: 5, ArrowUp: 5, ArrowLeft: -5, ArrowDown: -5, PageUp: 30, PageDown: -30 };
    if (e.key in step) onSeek(position + step[e.key]);
    else if (e.key === "Home") onSeek(0);
    else if (e.key === "End") onSeek(Math.max(0, duration - 1));
    else return;
    e.preventDefault();
  };
  return (
    <div class="waveform" role="slider" tabIndex={0} aria-label="Seek"
         aria-valuemin={0} aria-valuemax={Math.round(duration)} aria-valuenow={Math.round(position)}
         aria-valuetext={`${fmtTime(position)} of ${fmtTime(duration)}`} data-testid="waveform"
         onPointerDown={(e) => { (e.currentTarget as HTMLElement).setPointerCapture(e.pointerId); seekFromPointer(e); }}
         onKeyDown={onKey}>
      <canvas ref={canvas} aria-hidden="true" />
    </div>
  );
}
