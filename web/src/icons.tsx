/** Transport icons as inline SVG (glyphs like ⏮ are missing from many system fonts). */
const box = { width: 20, height: 20, viewBox: "0 0 24 24", fill: "currentColor", "aria-hidden": true } as const;

export const PlayIcon = () => <svg {...box}><path d="M7 4v16l13-8z" /></svg>;
export const PauseIcon = () => <svg {...box}><path d="M6 4h4v16H6zM14 4h4v16h-4z" /></svg>;
export const PrevIcon = () => <svg {...box}><path d="M6 5h2v14H6zM20 5v14L9 12z" /></svg>;
export const NextIcon = () => <svg {...box}><path d="M16 5h2v14h-2zM4 5v14l11-7z" /></svg>;
