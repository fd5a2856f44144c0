/**
 * Pick a person by name: a type-ahead over `GET /v1/users?q=` (ids and display names only), built as
 * the WAI-ARIA combobox pattern (an input with a listbox popup): ↓/↑ move through the people found,
 * Enter picks, Escape closes (then clears); a click picks too. The server wants a few letters and
 * rate-limits lookups, so the input asks once per pause in typing and ignores answers that arrive late.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "./api";

export interface UserRef { id: string; display_name: string }

const MIN_CHARS = 2;     // the server's default VERSEFLOW_USER_LOOKUP_MIN_CHARS
const PAUSE_MS = 200;
let instances = 0;

export function UserPicker({ label, exclude, onPick }:
  { label: string; exclude: string[]; onPick: (user: UserRef) => void }) {
  const [base] = useState(() => `userpicker-${++instances}`);
  const [text, setText] = useState("");
  const [found, setFound] = useState<UserRef[] | null>(null);
  const [active, setActive] = useState(-1);
  const [open, setOpen] = useState(false);
  const [note, setNote] = useState("");
  const asked = useRef(0);

  useEffect(() => {
    const q = text.trim();
    setActive(-1);
    if (q.length < MIN_CHARS) { setFound(null); setNote(q ? `Type at least ${MIN_CHARS} letters of the name.` : ""); return; }
    const n = ++asked.current;
    const timer = setTimeout(() => {
      api<UserRef[]>(`/v1/users?q=${encodeURIComponent(q)}`)
        .then((people) => {
          if (n !== asked.current) return;  // a later keystroke asked again
          const shown = people.filter((p) => !exclude.includes(p.id));
          setFound(shown); setOpen(true);
          setNote(shown.length ? `${shown.length} ${shown.length === 1 ? "person" : "people"} found; ↓ to choose.` : "No one found by that name.");
        })
        .catch((e) => { if (n === asked.current) { setFound(null); setNote(e.status === 429 ? "Too many lookups: wait a moment." : e.message); } });
    }, PAUSE_MS);
    return () => clearTimeout(timer);
  }, [text]);

  const people = found ?? [];
  const expanded = open && people.length > 0;
  const pick = (user: UserRef) => { onPick(user); setText(""); setFound(null); setOpen(false); setNote(""); };
  const optionId = (i: number) => `${base}-option-${i}`;
  // Display names are not unique: two alike show the start of their ids to tell them apart.
  const twins = (name: string) => people.filter((p) => p.display_name === name).length > 1;

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (!people.length) return;
      e.preventDefault();
      setOpen(true);
      const step = e.key === "ArrowDown" ? 1 : -1;
      setActive((a) => (a < 0 ? (step > 0 ? 0 : people.length - 1) : (a + step + people.length) % people.length));
    } else if (e.key === "Enter") {
      if (expanded && active >= 0) { e.preventDefault(); pick(people[active]); }
    } else if (e.key === "Escape") {
      if (expanded) { e.preventDefault(); setOpen(false); setActive(-1); }
      else if (text) { e.preventDefault(); setText(""); }
    }
  };

  return (
    <div class="picker">
      <label for={`${base}-input`}>{label}</label>
      <input id={`${base}-input`} type="text" role="combobox" autoComplete="off" value={text}
             aria-autocomplete="list" aria-expanded={expanded} aria-controls={`${base}-list`}
             aria-describedby={`${base}-note`}
             aria-activedescendant={expanded && active >= 0 ? optionId(active) : undefined}
             onInput={(e) => { setText((e.target as HTMLInputElement).value); setOpen(true); }}
             onKeyDown={onKeyDown} onBlur={() => setOpen(false)} onFocus={() => setOpen(true)} />
      <ul id={`${base}-list`} role="listbox" aria-label={`${label}: people found`} hidden={!expanded}>
        {people.map((p, i) => (
          <li key={p.id} id={optionId(i)} role="option" aria-selected={i === active}
              onMouseDown={(e) => e.preventDefault() /* keep the input's focus */}
              onMouseEnter={() => setActive(i)} onClick={() => pick(p)}>
            {p.display_name}{twins(p.display_name) && <span class="muted"> · #{p.id.slice(0, 8)}</span>}
          </li>))}
      </ul>
      <p id={`${base}-note`} class="muted small" aria-live="polite">{note}</p>
    </div>
  );
}
