/** Sign in and sign up (the role decides whether the account can upload). */
import { useState } from "preact/hooks";
import { signIn, signUp } from "../api";
import { ErrorText } from "../components";

export function AuthPage() {
  const [mode, setMode] = useState<"in" | "up">("in");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    setBusy(true); setError(null);
    try {
      if (mode === "in") await signIn(String(f.get("email")), String(f.get("password")));
      else await signUp(String(f.get("email")), String(f.get("password")), String(f.get("display_name")),
                        f.get("artist") ? "artist" : "listener");
    } catch (err: any) { setError(err.message); } finally { setBusy(false); }
  };

  return (
    <section class="card narrow" aria-labelledby="auth-title">
      <h1 id="auth-title">{mode === "in" ? "Sign in to VerseFlow" : "Create your VerseFlow account"}</h1>
      <form onSubmit={submit}>
        {mode === "up" && (
          <label>Display name<input name="display_name" required maxLength={100} autoComplete="nickname" /></label>
        )}
        <label>Email<input name="email" type="email" required autoComplete="email" /></label>
        <label>Password<input name="password" type="password" required minLength={mode === "up" ? 8 : 1}
                              autoComplete={mode === "in" ? "current-password" : "new-password"} /></label>
        {mode === "up" && (
          <label class="check"><input name="artist" type="checkbox" /> I am an artist and want to upload music</label>
        )}
        <ErrorText error={error} />
        <button type="submit" class="primary" disabled={busy}>{mode === "in" ? "Sign in" : "Sign up"}</button>
      </form>
      <p>
        {mode === "in" ? "New here? " : "Have an account? "}
        <button class="link" onClick={() => { setMode(mode === "in" ? "up" : "in"); setError(null); }}>
          {mode === "in" ? "Create an account" : "Sign in"}
        </button>
      </p>
    </section>
  );
}
