/**
 * Upload (artists): drop a file, it goes up with tus (resumable: an interrupted upload continues
 * where it stopped), then the processing stages arrive as `notify` events on the WebSocket, then the
 * analysis, matches and the waveform.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { api, tokenValidFor } from "../api";
import { ErrorText } from "../components";
import { playQueue } from "../player";
import { realtime } from "../realtime";
import { Link } from "../router";

interface Job { name: string; bytes: number; total: number; trackId: string | null; stage: string | null;
                progress: number; status: "uploading" | "processing" | "ready" | "failed"; detail?: string }

export function UploadPage({ me }: { me: any }) {
  const [artists, setArtists] = useState<any[] | null>(null);
  const [artistId, setArtistId] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [job, setJob] = useState<Job | null>(null);
  const [dragging, setDragging] = useState(false);
  const events = useRef(new Map<string, any[]>());
  const fileInput = useRef<HTMLInputElement>(null);
  const jobRef = useRef<Job | null>(null);
  const set = (j: Job) => { jobRef.current = j; setJob(j); };

  useEffect(() => {
    api<any[]>("/v1/me/artists").then((a) => { setArtists(a); if (a[0]) setArtistId(a[0].id); })
      .catch((e) => setError(e.message));
    realtime.connect().catch((e) => setError(`Live progress unavailable: ${e.message}`));
    return realtime.on("notify", (msg) => {
      const id = msg.data?.track_id;
      if (!id) return;
      events.current.set(id, [...(events.current.get(id) ?? []), msg]);
      if (jobRef.current?.trackId === id) apply(msg);
    });
  }, []);

  const apply = (msg: any) => {
    const j = jobRef.current!;
    if (msg.event === "track.progress") set({ ...j, status: "processing", stage: msg.data.stage, progress: msg.data.progress });
    else if (msg.event === "track.ready") set({ ...j, status: "ready", progress: 1, stage: "ready" });
    else if (msg.event === "track.failed") set({ ...j, status: "failed", detail: msg.data.reason });
  };

  if (me.role !== "artist" && me.role !== "admin") {
    return <section><h1>Upload</h1><p>Only artist accounts upload music. Sign up as an artist to share yours.</p></section>;
  }

  const createArtist = async (e: Event) => {
    e.preventDefault();
    const name = String(new FormData(e.currentTarget as HTMLFormElement).get("name"));
    try {
      const a = await api("/v1/artists", { method: "POST", json: { name } });
      setArtists([...(artists ?? []), a]); setArtistId(a.id);
    } catch (err: any) { setError(err.message); }
  };

  const start = async (file: File, title: string) => {
    setError(null);
    const { Upload } = await import("tus-js-client");
    const j: Job = { name: file.name, bytes: 0, total: file.size, trackId: null, stage: null, progress: 0, status: "uploading" };
    set(j);
    const upload = new Upload(file, {
      endpoint: "/v1/uploads",
      retryDelays: [0, 1000, 3000, 5000],
      chunkSize: 8 * 1024 * 1024,
      metadata: { title, artist_id: artistId, filename: file.name, filetype: file.type || "application/octet-stream" },
      removeFingerprintOnSuccess: true,
      // Each request carries a token that is still valid: a long upload outlives one access token.
      onBeforeRequest: async (req) => { req.setHeader("Authorization", `Bearer ${await tokenValidFor(60)}`); },
      onProgress: (sent, total) => set({ ...jobRef.current!, bytes: sent, total }),
      onAfterResponse: (_req, res) => {
        const id = res.getHeader("X-Track-Id");
        if (id && !jobRef.current!.trackId) {
          set({ ...jobRef.current!, trackId: id, status: "processing" });
          (events.current.get(id) ?? []).forEach(apply);
        }
      },
      onError: (err) => { set({ ...jobRef.current!, status: "failed" }); setError(err.message.split("\n")[0]); },
      onSuccess: () => { void pollUntilDone(); },
    });
    const previous = await upload.findPreviousUploads();
    if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
    upload.start();
  };

  /** The WebSocket says it first; a poll makes sure a missed event (a reconnect) cannot stall the page. */
  const pollUntilDone = async () => {
    while (jobRef.current && !["ready", "failed"].includes(jobRef.current.status)) {
      const id = jobRef.current.trackId;
      if (id) {
        const t = await api(`/v1/tracks/${id}`).catch(() => null);
        if (t?.status === "ready") set({ ...jobRef.current, status: "ready", progress: 1, stage: "ready" });
        else if (t?.status === "failed") set({ ...jobRef.current, status: "failed", detail: t.error?.reason });
      }
      await new Promise((r) => setTimeout(r, 1500));
    }
  };

  const submit = (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    const file = fileInput.current?.files?.[0];
    if (!file) { setError("Choose an audio file first."); return; }
    void start(file, String(f.get("title") || file.name.replace(/\.[^.]+$/, "")));
  };

  return (
    <section aria-labelledby="upload-title">
      <h1 id="upload-title">Upload a track</h1>
      <ErrorText error={error} />
      {artists && !artists.length && (
        <form class="card" onSubmit={createArtist}>
          <p>First, name the artist your music is published under.</p>
          <label>Artist name<input name="name" required maxLength={200} /></label>
          <button class="primary" type="submit">Create artist</button>
        </form>
      )}
      {artists && artists.length > 0 && (
        <form class="card" onSubmit={submit}>
          <label>Artist
            <select value={artistId} onChange={(e) => setArtistId((e.target as HTMLSelectElement).value)}>
              {artists.map((a) => <option key={a.id} value={a.id}>{a.name}</option>)}
            </select>
          </label>
          <label>Title<input name="title" maxLength={300} placeholder="from the file name if empty" /></label>
          <div class={`dropzone${dragging ? " over" : ""}`}
               onDragOver={(e) => { e.preventDefault(); setDragging(true); }}
               onDragLeave={() => setDragging(false)}
               onDrop={(e) => {
                 e.preventDefault(); setDragging(false);
                 if (e.dataTransfer?.files.length && fileInput.current) fileInput.current.files = e.dataTransfer.files;
               }}>
            <label>Audio file (drop it here or choose)
              <input ref={fileInput} name="file" type="file" accept="audio/*,.flac,.wav,.mp3,.ogg,.m4a" /></label>
          </div>
          <button class="primary" type="submit" disabled={job?.status === "uploading" || job?.status === "processing"}>
            Upload</button>
        </form>
      )}
      {job && (
        <div class="card" aria-live="polite" data-testid="upload-status" data-status={job.status}>
          <p><strong>{job.name}</strong>: {job.status}</p>
          <label>Sent
            <progress max={job.total || 1} value={job.bytes} aria-label="Bytes sent" /></label>
          <label>Processing{job.stage ? ` (${job.stage})` : ""}
            <progress max={1} value={job.progress} aria-label="Processing" data-testid="processing" /></label>
          {job.status === "failed" && <p class="error" role="alert">Processing failed: {job.detail ?? "unknown reason"}</p>}
          {job.status === "ready" && job.trackId && <Ready id={job.trackId} />}
        </div>
      )}
    </section>
  );
}

function Ready({ id }: { id: string }) {
  const [t, setT] = useState<any>(null);
  useEffect(() => { api(`/v1/tracks/${id}`).then(setT).catch(() => undefined); }, [id]);
  if (!t) return null;
  const a = t.analysis ?? {};
  return (
    <div>
      <p>Ready: <Link to={`/track/${id}`}>{t.title}</Link>
        {a.tempo && <> · {Math.round(a.tempo.bpm)} BPM</>}{a.key && <> · {a.key.label}</>}
        {a.loudness && <> · {a.loudness.integrated_lufs.toFixed(1)} LUFS</>}{a.genre && <> · {a.genre.label}</>}
        {t.matches?.length ? <> · {t.matches.length} match(es) found</> : null}</p>
      <button class="primary" onClick={() => void playQueue([{ id, title: t.title, artist_name: t.artist_name }])}>
        Play it</button>
    </div>
  );
}
