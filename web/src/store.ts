/** A tiny observable value for state shared between the player, the realtime client and the views. */
import { useEffect, useState } from "preact/hooks";

export class Store<T> {
  private subs = new Set<(v: T) => void>();
  constructor(private value: T) {}
  get(): T { return this.value; }
  set(next: T): void { this.value = next; this.subs.forEach((fn) => fn(next)); }
  update(patch: Partial<T>): void { this.set({ ...this.value, ...patch }); }
  subscribe(fn: (v: T) => void): () => void { this.subs.add(fn); return () => this.subs.delete(fn); }
}

export function useStore<T>(store: Store<T>): T {
  const [value, setValue] = useState(store.get());
  useEffect(() => store.subscribe(setValue), [store]);
  return value;
}
