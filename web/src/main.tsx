import { render } from "preact";
import { App } from "./app";
import { player } from "./player";
import { realtime } from "./realtime";
import "./style.css";

// For the browser console and the end-to-end tests (e.g. `verseflow.realtime.drop()` cuts the socket).
(window as any).verseflow = { realtime, player };

render(<App />, document.getElementById("app")!);
