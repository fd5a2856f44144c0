/**
 * The REST client: bearer tokens kept in localStorage, refreshed transparently (rotation: each
 * refresh token works once, so concurrent 401s share one refresh), RFC 9457 problems as errors.
 */

export interface Tokens { access_token: string; refresh_token: string; expires_in: number }
export interface Me { id: string; email: string; display_name: string; role: string }

const KEY = "verseflow.tokens";

export class ApiError extends Error {
  constructor(public status: number, public detail: string, public body: unknown) { super(detail); }
}

let tokens: Tokens | null = JSON.parse(localStorage.getItem(KEY) ?? "null");
let refreshing: Promise<boolean> | null = null;
const listeners = new Set<() => void>();

export function onAuthChange(fn: () => void): () => void { listeners.add(fn); return () => listeners.delete(fn); }
export function accessToken(): string | null { return tokens?.access_token ?? null; }
export function signedIn(): boolean { return tokens !== null; }

function store(next: Tokens | null): void {
  tokens = next;
  if (next) localStorage.setItem(KEY, JSON.stringify(next)); else localStorage.removeItem(KEY);
  listeners.forEach((fn) => fn());
}

async function problem(res: Response): Promise<ApiError> {
  let body: any = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  let detail = body?.detail ?? body?.title ?? res.statusText;
  if (Array.isArray(detail)) detail = detail.map((d: any) => `${(d.loc ?? []).slice(-1)[0] ?? ""}: ${d.msg}`).join("; ");
  if (Array.isArray(body?.errors)) detail = body.errors.map((d: any) => `${(d.loc ?? []).slice(-1)[0] ?? ""}: ${d.msg}`).join("; ") || detail;
  return new ApiError(res.status, String(detail), body);
}

async function refresh(): Promise<boolean> {
  if (!tokens) return false;
  refreshing ??= (async () => {
    try {
      const res = await fetch("/v1/auth/refresh", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: tokens!.refresh_token }),
      });
      if (!res.ok) { store(null); return false; }
      store(await res.json());
      return true;
    } finally { refreshing = null; }
  })();
  return refreshing;
}

/** A JSON request (`raw`: the Response itself, e.g. a CSV); retried once after a transparent refresh when the access token has expired. */
export async function api<T = any>(path: string, init: RequestInit & { json?: unknown; raw?: boolean } = {}): Promise<T> {
  const send = () => {
    const headers = new Headers(init.headers);
    if (tokens) headers.set("Authorization", `Bearer ${tokens.access_token}`);
    let body = init.body;
    if (init.json !== undefined) { headers.set("Content-Type", "application/json"); body = JSON.stringify(init.json); }
    return fetch(path, { ...init, headers, body });
  };
  let res = await send();
  if (res.status === 401 && tokens && await refresh()) res = await send();
  if (!res.ok) throw await problem(res);
  if (init.raw) return res as T;
  if (res.status === 204) return undefined as T;
  return res.json();
}

/** The access token, refreshed first when it expires within `marginS` (read from the JWT's `exp`). */
export async function tokenValidFor(marginS = 60): Promise<string | null> {
  if (!tokens) return null;
  try {
    const payload = JSON.parse(atob(tokens.access_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    if (typeof payload.exp === "number" && payload.exp - Date.now() / 1000 < marginS) await refresh();
  } catch { /* not a JWT we can read: the server will say */ }
  return accessToken();
}

export async function signIn(email: string, password: string): Promise<void> {
  const res = await fetch("/v1/auth/token", {
    method: "POST", body: new URLSearchParams({ username: email, password }),
  });
  if (!res.ok) throw await problem(res);
  store(await res.json());
}

export async function signUp(email: string, password: string, display_name: string, role: string): Promise<void> {
  await api("/v1/auth/register", { method: "POST", json: { email, password, display_name, role } });
  await signIn(email, password);
}

export async function signOut(): Promise<void> {
  const current = tokens;
  if (current) {
    try { await api("/v1/auth/logout", { method: "POST", json: { refresh_token: current.refresh_token } }); }
    catch { /* already invalid */ }
  }
  store(null);
}
