/** Account: profile name, links to the subscription and (artists) statements, and app passwords for Subsonic apps (shown once when made). */
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { ErrorText } from "../components";
import { Link } from "../router";

export function AccountPage({ me }: { me: any }) {
  const [passwords, setPasswords] = useState<any[]>([]);
  const [made, setMade] = useState<any>(null);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const reload = () => api<any[]>("/v1/me/app-passwords").then(setPasswords).catch((e) => setError(e.message));
  useEffect(() => { void reload(); }, []);

  const rename = async (e: Event) => {
    e.preventDefault();
    const display_name = String(new FormData(e.currentTarget as HTMLFormElement).get("display_name"));
    try { await api("/v1/me", { method: "PATCH", json: { display_name } }); setSaved("Saved."); }
    catch (err: any) { setError(err.message); }
  };
  const create = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    try {
      setMade(await api("/v1/me/app-passwords", { method: "POST", json: { name: new FormData(form).get("name") } }));
      form.reset(); await reload();
    } catch (err: any) { setError(err.message); }
  };
  const revoke = async (id: string) => { await api(`/v1/me/app-passwords/${id}`, { method: "DELETE" }); await reload(); };

  return (
    <section aria-labelledby="account-title">
      <h1 id="account-title">Account</h1>
      <ErrorText error={error} />
      <form class="card" onSubmit={rename}>
        <p class="muted">{me.email} · {me.role}</p>
        <label>Display name<input name="display_name" defaultValue={me.display_name} required maxLength={100} /></label>
        <button type="submit">Save</button> {saved && <span role="status">{saved}</span>}
      </form>
      <p class="muted">Your user id (to be added to a playlist): <code data-testid="user-id">{me.id}</code></p>
      <p class="row wrap">
        <Link to="/subscription">Subscription and family plan</Link>
        {(me.role === "artist" || me.role === "admin") && <Link to="/statements">Royalty statements</Link>}
      </p>
      <div class="card">
        <h2>App passwords</h2>
        <p class="muted">For Subsonic apps (DSub, Symfonium, …) at <code>{location.origin}/rest/</code>; your login password stays private.</p>
        <ul class="plain" aria-label="App passwords">
          {passwords.map((p) => <li key={p.id}>{p.name} <button class="link" onClick={() => void revoke(p.id)}>Revoke {p.name}</button></li>)}
        </ul>
        <form class="row" onSubmit={create}>
          <label class="grow">New app password name<input name="name" required maxLength={100} /></label>
          <button type="submit">Create</button>
        </form>
        {made && <p role="status">Copy it now, it is shown once: user <code>{made.username}</code>, password <code data-testid="app-password">{made.password}</code></p>}
      </div>
    </section>
  );
}
