/**
 * Money pages: the subscription (plans and prices, subscribe with a test card in Stripe's test mode,
 * change plan, cancel at the period's end and resume), the family plan's seats and invitations, and an
 * artist's monthly royalty statements (with their CSV).
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api";
import { ErrorText } from "../components";
import { Link } from "../router";
import { type CardForm, mountCardForm } from "../stripe";

export function money(minor: number, currency: string): string {
  try { return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 100); }
  catch { return `${(minor / 100).toFixed(2)} ${currency.toUpperCase()}`; }
}

const day = (iso: string | null) => iso ? new Date(iso).toLocaleDateString(undefined, { dateStyle: "medium" }) : "";
const PLAN_NAMES: Record<string, string> = { free: "Free", premium: "Premium", family: "Family" };
/** The local Stripe server's (and Stripe's) test payment methods. */
const TEST_CARDS = [
  ["pm_card_visa", "Visa ending 4242 (pays)"],
  ["pm_card_mastercard", "Mastercard ending 4444 (pays)"],
  ["pm_card_chargeDeclined", "Card that is declined"],
  ["pm_card_chargeDeclinedInsufficientFunds", "Card with insufficient funds"],
];
const LIVE = ["active", "trialing", "past_due", "incomplete", "unpaid", "paused"];

export function SubscriptionPage() {
  const [view, setView] = useState<any>(null);
  const [offers, setOffers] = useState<any>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [status, setStatus] = useState<string | null>(null);
  const reloadView = () => api("/v1/me/subscription").then(setView).catch((e) => setError(e.message));
  useEffect(() => {
    void reloadView();
    api("/v1/billing/plans").then(setOffers).catch((e) => setError(e.message));
  }, []);

  const act = async (what: string, path: string, init: any) => {
    setBusy(true); setError(null); setStatus(null);
    try { setView(await api(path, init)); setStatus(what); }
    catch (e: any) { setError(e.status === 402 ? `Payment declined: ${e.message}` : e.message); }
    finally { setBusy(false); }
  };
  const card = useRef<CardForm | null>(null);
  const [cardReady, setCardReady] = useState(false);
  const [choice, setChoice] = useState<"test" | "card" | null>(null);
  const subscribe = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    let method = f.get("payment_method") || undefined;
    if (payWith === "card") {
      if (!card.current) return;
      setBusy(true); setError(null); setStatus(null);
      try { method = await card.current.confirm(); }
      catch (err: any) {
        setError(err.stripe?.type === "card_error" ? `Payment declined: ${err.message}` : err.message);
        setBusy(false);
        return;
      }
    }
    void act("Subscribed.", "/v1/billing/subscription", { method: "POST", json: { plan: f.get("plan"), payment_method: method } });
  };

  if (!view || !offers) return <section aria-busy="true"><ErrorText error={error} /><p>Loading…</p></section>;
  const sub = view.subscription;
  const live = sub && LIVE.includes(sub.status);
  // Test mode offers Stripe's test payment methods from a list; a publishable key adds Stripe's card form
  // (the only way with a live key).
  const payWith = choice ?? (offers.test_mode ? "test" : offers.publishable_key ? "card" : "none");
  return (
    <section aria-labelledby="sub-title">
      <h1 id="sub-title">Subscription</h1>
      <ErrorText error={error} />
      {status && <p role="status">{status}</p>}
      <div class="card">
        <p>Your plan: <strong data-testid="plan">{PLAN_NAMES[view.plan] ?? view.plan}</strong></p>
        {live && <>
          <p class="muted" data-testid="subscription-status">
            {sub.cancel_at_period_end
              ? `Cancelled: ${PLAN_NAMES[sub.plan]} lasts until ${day(sub.current_period_end)}.`
              : `${PLAN_NAMES[sub.plan]} (${sub.status}), ${money(sub.price.amount, sub.price.currency)} a ${sub.price.interval}; renews on ${day(sub.current_period_end)}.`}
          </p>
          {view.next_invoice && <p>Next invoice: {money(view.next_invoice.amount_due, view.next_invoice.currency)} on {day(view.next_invoice.date)}</p>}
          <div class="row wrap">
            {!sub.cancel_at_period_end && offers.plans.filter((o: any) => o.plan !== sub.plan).map((o: any) => (
              <button key={o.plan} disabled={busy}
                      onClick={() => void act(`Switched to ${PLAN_NAMES[o.plan]}.`, "/v1/billing/subscription", { method: "PATCH", json: { plan: o.plan } })}>
                Switch to {PLAN_NAMES[o.plan]} ({money(o.amount, o.currency)} a {o.interval})</button>))}
            {sub.cancel_at_period_end
              ? <button class="primary" disabled={busy}
                        onClick={() => void act("Resumed.", "/v1/billing/subscription/resume", { method: "POST" })}>Resume subscription</button>
              : <button disabled={busy}
                        onClick={() => void act("Cancelled at the end of the period.", "/v1/billing/subscription/cancel", { method: "POST" })}>Cancel subscription</button>}
          </div>
        </>}
      </div>
      {!live && view.plan === "free" && (
        <form class="card" onSubmit={subscribe}>
          <h2>Subscribe</h2>
          <fieldset>
            <legend>Plan</legend>
            {offers.plans.map((o: any, i: number) => (
              <label class="check" key={o.plan}>
                <input type="radio" name="plan" value={o.plan} defaultChecked={i === 0} />
                {PLAN_NAMES[o.plan]}: {money(o.amount, o.currency)} a {o.interval}
                {o.seats > 1 ? `, for up to ${o.seats} accounts` : ""}
              </label>))}
          </fieldset>
          {offers.test_mode && offers.publishable_key && (
            <fieldset>
              <legend>Pay with</legend>
              <label class="check"><input type="radio" name="pay_with" checked={payWith === "test"}
                                          onChange={() => setChoice("test")} /> Stripe test payment method from a list</label>
              <label class="check"><input type="radio" name="pay_with" checked={payWith === "card"}
                                          onChange={() => setChoice("card")} /> Card form (Stripe's Payment Element)</label>
            </fieldset>)}
          {payWith === "test" &&
            <label>Test card (Stripe test mode: no real money moves)
              <select name="payment_method">
                {TEST_CARDS.map(([id, label]) => <option key={id} value={id}>{label}</option>)}
              </select></label>}
          {payWith === "card" && <PaymentElementBox publishableKey={offers.publishable_key} form={card} onReady={setCardReady} />}
          {payWith === "none" && <p class="muted">Card payments need Stripe's publishable key (VERSEFLOW_STRIPE_PUBLISHABLE_KEY).</p>}
          <button class="primary" type="submit"
                  disabled={busy || payWith === "none" || (payWith === "card" && !cardReady)}>Subscribe</button>
        </form>
      )}
      <FamilyCard plan={view.plan} onChange={() => void reloadView()} />
    </section>
  );
}

/** Stripe's Payment Element, mounted on a fresh SetupIntent while this box is shown (Stripe.js loads then). */
function PaymentElementBox({ publishableKey, form, onReady }:
  { publishableKey: string; form: { current: CardForm | null }; onReady: (ready: boolean) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const [error, setError] = useState<string | null>(null);
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let gone = false;
    setError(null);
    mountCardForm(publishableKey, box.current!)
      .then((mounted) => { if (gone) mounted.destroy(); else { form.current = mounted; onReady(true); } })
      .catch((e) => { if (!gone) setError(e.message); });
    return () => { gone = true; form.current?.destroy(); form.current = null; onReady(false); };
  }, [publishableKey, attempt]);
  return (
    <div class="card-form">
      <ErrorText error={error} />
      {error && <button type="button" onClick={() => setAttempt((n) => n + 1)}>Load the card form again</button>}
      <div ref={box} role="group" aria-label="Card details" data-testid="payment-element" />
    </div>
  );
}

/**
 * The family plan: its owner invites (one code per seat) and removes members; a member leaves; anyone
 * joins with a code. Removing and leaving take someone's plan away, so each asks once more (the
 * question takes the focus; "Keep" or Escape goes back). A change reloads the plan shown above too.
 */
function FamilyCard({ plan, onChange }: { plan: string; onChange: () => void }) {
  const [family, setFamily] = useState<any>(null);
  const [code, setCode] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState("");
  const [asking, setAsking] = useState<{ question: string; yes: string; run: () => Promise<unknown>; done: string } | null>(null);
  const reload = () => api("/v1/me/family").then(setFamily).catch((e) => { setFamily(null); if (e.status !== 404) setError(e.message); });
  useEffect(() => { void reload(); }, [plan]);
  const run = async (fn: () => Promise<unknown>, done: string) => {
    setError(null); setStatus(""); setAsking(null);
    try { await fn(); if (done) setStatus(done); await reload(); onChange(); } catch (e: any) { setError(e.message); }
  };
  const join = (e: Event) => {
    e.preventDefault();
    const value = String(new FormData(e.currentTarget as HTMLFormElement).get("code")).trim();
    void run(async () => { const joined = await api<any>("/v1/me/family/join", { method: "POST", json: { code: value } });
                           setStatus(`You joined ${joined.owner_name}'s family.`); }, "");
  };
  const remove = (m: any) => setAsking({
    question: `Remove ${m.display_name} from your family? They go back to the free plan.`, yes: `Yes, remove ${m.display_name}`,
    run: () => api(`/v1/me/family/members/${m.user_id}`, { method: "DELETE" }), done: `${m.display_name} was removed from the family.`,
  });
  const leave = () => setAsking({
    question: `Leave ${family.owner_name}'s family? You go back to the free plan.`, yes: "Yes, leave the family",
    run: () => api("/v1/me/family/membership", { method: "DELETE" }), done: `You left ${family.owner_name}'s family.`,
  });
  return (
    <div class="card" aria-labelledby="family-title">
      <h2 id="family-title">Family</h2>
      <ErrorText error={error} />
      <p class="sr-only" role="status">{status}</p>
      {asking && <Confirm question={asking.question} yes={asking.yes}
                          onYes={() => void run(asking.run, asking.done)} onNo={() => setAsking(null)} />}
      {family ? <>
        <p>{family.role === "owner" ? "You share your family plan" : `You are in ${family.owner_name}'s family`}:
          {" "}<span data-testid="seats">{family.seats_used} of {family.seats_max}</span> seats used
          {family.plan_active ? "" : " (the plan is not active)"}.</p>
        <ul class="plain" aria-label="Family members">
          {family.members.map((m: any) => (
            <li key={m.user_id}>{m.display_name}
              {family.role === "owner" && <> <button class="link" onClick={() => remove(m)}>
                Remove {m.display_name}</button></>}</li>))}
        </ul>
        {family.role === "owner"
          ? <button onClick={() => void run(async () => setCode((await api("/v1/me/family/invites", { method: "POST" })).code), "")}>
              Create an invitation</button>
          : <button onClick={leave}>Leave the family</button>}
        {code && family.role === "owner" &&
          <p role="status">Send this code to the person you invite (single use): <code data-testid="family-code">{code}</code></p>}
      </> : plan !== "family" && (
        <form class="row" onSubmit={join}>
          <label class="grow">Family invitation code<input name="code" required minLength={16} maxLength={64} autoComplete="off" /></label>
          <button type="submit">Join the family</button>
        </form>
      )}
    </div>
  );
}

/** Asks before a step that cannot be undone by its author alone; the confirming button takes the focus. */
function Confirm({ question, yes, onYes, onNo }: { question: string; yes: string; onYes: () => void; onNo: () => void }) {
  const button = useRef<HTMLButtonElement>(null);
  useEffect(() => { button.current?.focus(); }, [question]);
  return (
    <div role="group" aria-label="Please confirm" class="confirm"
         onKeyDown={(e) => { if (e.key === "Escape") { e.preventDefault(); onNo(); } }}>
      <p>{question}</p>
      <div class="row">
        <button ref={button} class="primary" onClick={onYes}>{yes}</button>
        <button onClick={onNo}>Keep</button>
      </div>
    </div>
  );
}

/** An artist's royalty statements: one per monthly run, lines per track, totals, and the CSV. */
export function StatementsPage() {
  const [artists, setArtists] = useState<any[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => { api<any[]>("/v1/me/artists").then(setArtists).catch((e) => setError(e.message)); }, []);
  return (
    <section aria-labelledby="statements-title">
      <h1 id="statements-title">Royalty statements</h1>
      <ErrorText error={error} />
      {artists && !artists.length && <p class="muted">You have no artist yet: <Link to="/upload">create one</Link> to upload and earn.</p>}
      {(artists ?? []).map((a) => <ArtistStatements key={a.id} artist={a} />)}
    </section>
  );
}

function ArtistStatements({ artist }: { artist: any }) {
  const [items, setItems] = useState<any[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => { api<any[]>(`/v1/artists/${artist.id}/statements`).then(setItems).catch((e) => setError(e.message)); }, [artist.id]);
  const csv = async () => {
    try {
      const res = await api<Response>(`/v1/artists/${artist.id}/statements?format=csv`, { raw: true });
      const url = URL.createObjectURL(await res.blob());
      const a = Object.assign(document.createElement("a"), { href: url, download: `statements-${artist.name}.csv` });
      a.click(); setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e: any) { setError(e.message); }
  };
  return (
    <div class="card">
      <h2>{artist.name}</h2>
      <ErrorText error={error} />
      {items && !items.length && <p class="muted">No statements yet: they come with each month's royalty run.</p>}
      {items && items.length > 0 && <button onClick={() => void csv()}>Download {artist.name}'s statements as CSV</button>}
      {(items ?? []).map((s) => (
        <div class="table-wrap" key={s.run_id}>
          <table aria-label={`${artist.name}, ${s.month} (${s.model.replace("_", " ")})`}>
            <caption>{s.month} · {s.model.replace("_", " ")} · total <strong>{money(s.total, s.currency)}</strong></caption>
            <thead><tr><th scope="col">Track</th><th scope="col">Streams</th><th scope="col">Amount</th></tr></thead>
            <tbody>{s.lines.map((l: any) => (
              <tr key={l.track_id}><td><Link to={`/track/${l.track_id}`}>{l.title}</Link></td>
                <td>{l.streams}</td><td>{money(l.amount, s.currency)}</td></tr>))}</tbody>
          </table>
        </div>))}
    </div>
  );
}
