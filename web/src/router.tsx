/** Client-side routes under /app/ (the web deployment answers index.html for any of them). */
import { useEffect, useState } from "preact/hooks";

const BASE = "/app";

export function currentRoute(): string {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : location.pathname;
  return (path || "/") + location.search;
}

/** Go to `to`; focus moves to the page (for screen readers) unless the caller keeps it (search box). */
export function navigate(to: string, { replace = false, keepFocus = false } = {}): void {
  if (replace) history.replaceState(null, "", BASE + to); else history.pushState(null, "", BASE + to);
  dispatchEvent(new PopStateEvent("popstate"));
  if (!keepFocus) document.getElementById("main")?.focus();
}

export function useRoute(): string {
  const [route, setRoute] = useState(currentRoute());
  useEffect(() => {
    const update = () => setRoute(currentRoute());
    addEventListener("popstate", update);
    return () => removeEventListener("popstate", update);
  }, []);
  return route;
}

/** A link that routes in the page (keeps the player playing). */
export function Link(props: { to: string; children: any; class?: string; "aria-label"?: string }) {
  return (
    <a href={BASE + props.to} class={props.class} aria-label={props["aria-label"]}
       onClick={(e) => {
         if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
         e.preventDefault(); navigate(props.to);
       }}>{props.children}</a>
  );
}
