import { defineConfig } from "vite";

// The console is served by the server on its HTTP port under /console/ (src/connect/console-files.ts).
export default defineConfig({
  base: "/console/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    // The server reads every built file at start; one small bundle, no inlined data URLs.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 400,
  },
  oxc: {
    jsx: { runtime: "automatic", importSource: "preact" },
  },
});
