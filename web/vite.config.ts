import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// Served by serve_deployments/web.py under /app/; assets are content-hashed (cached as immutable).
export default defineConfig({
  base: "/app/",
  plugins: [preact()],
  // hls.js (~160 KB gzipped) is its own chunk, loaded on first play; the initial script stays small.
  build: { outDir: "dist", assetsDir: "assets", sourcemap: false, target: "es2022", chunkSizeWarningLimit: 600 },
  server: { proxy: { "/v1": "http://127.0.0.1:8000", "/media": "http://127.0.0.1:8000" } },
});
