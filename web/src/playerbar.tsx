/** The bar at the bottom: now playing, transport, the waveform seek bar, the rung, gain and queue. */
import { useState } from "preact/hooks";
import { fmtTime } from "./components";
import { NextIcon, PauseIcon, PlayIcon, PrevIcon } from "./icons";
import { player, removeAt, seek, skip, toggle } from "./player";
import { Link } from "./router";
import { useStore } from "./store";
import { Waveform } from "./waveform";

export function PlayerBar() {
  const s = useStore(player);
  const [showQueue, setShowQueue] = useState(false);
  if (!s.track) return null;
  return (
    <section class="playerbar" aria-label="Player">
      <div class="now">
        <Link to={`/track/${s.track.id}`}><strong>{s.track.title}</strong></Link>
        <span class="muted">{s.track.artist_name}</span>
      </div>
      <div class="controls">
        <button class="icon" aria-label="Previous track" onClick={() => void skip(-1)} disabled={s.index <= 0}><PrevIcon /></button>
        <button class="icon big" aria-label={s.playing ? "Pause" : "Play"} onClick={toggle}>{s.playing ? <PauseIcon /> : <PlayIcon />}</button>
        <button class="icon" aria-label="Next track" onClick={() => void skip(1)} disabled={s.index >= s.queue.length - 1}><NextIcon /></button>
        <span class="time" data-testid="position">{fmtTime(s.position)}</span>
        <Waveform trackId={s.track.id} position={s.position} duration={s.duration} onSeek={seek} />
        <span class="time">{fmtTime(s.duration)}</span>
      </div>
      <div class="meta">
        <span class="badge" data-testid="rung" title={`engine: ${s.engine ?? "-"}`}>{s.rung ?? "…"}</span>
        <span class="badge" data-testid="gain" title="loudness normalisation to -14 LUFS">
          {s.gainDb >= 0 ? "+" : ""}{s.gainDb.toFixed(1)} dB
        </span>
        <button class="link" aria-expanded={showQueue} onClick={() => setShowQueue(!showQueue)}>
          Queue ({s.queue.length})
        </button>
      </div>
      {s.error && <p class="error" role="alert">{s.error}</p>}
      {showQueue && (
        <ol class="queue" aria-label="Queue">
          {s.queue.map((q, i) => (
            <li key={`${q.id}-${i}`} aria-current={i === s.index ? "true" : undefined}>
              <span class="grow">{q.title}</span>
              <button class="icon" aria-label={`Remove ${q.title} from the queue`} onClick={() => removeAt(i)}
                      disabled={i === s.index}>×</button>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
