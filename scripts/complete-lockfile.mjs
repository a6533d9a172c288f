// The npm registry reachable from our machines lacks some platform builds of @bufbuild/buf, so
// `npm install` writes a lock without entries for them and `npm ci` then refuses the lock as out
// of sync. This adds the missing optional entries (never installed on Linux x64). Run it after
// every `npm install` that rewrites package-lock.json.
import { readFileSync, writeFileSync } from "node:fs";

const path = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
const platforms = {
  "darwin-arm64": ["darwin", "arm64"],
  "darwin-x64": ["darwin", "x64"],
  "linux-aarch64": ["linux", "arm64"],
  "linux-armv7": ["linux", "arm"],
  "linux-x64": ["linux", "x64"],
  "win32-arm64": ["win32", "arm64"],
  "win32-x64": ["win32", "x64"],
};
let added = 0;
for (const [name, meta] of Object.entries(lock.packages)) {
  const deps = meta.optionalDependencies ?? {};
  for (const [dep, version] of Object.entries(deps)) {
    const m = /^@bufbuild\/buf-(.+)$/.exec(dep);
    if (!m || !platforms[m[1]]) continue;
    const key = `${name}/node_modules/${dep}`.replace(/^node_modules\/@bufbuild\/buf\/node_modules\//, "node_modules/");
    if (lock.packages[key]) continue;
    const [os, cpu] = platforms[m[1]];
    lock.packages[key] = { version, cpu: [cpu], dev: meta.dev ?? false, optional: true, os: [os] };
    added++;
  }
}
writeFileSync(path, JSON.stringify(lock, null, 2) + "\n");
console.log(`complete-lockfile: added ${added} platform entries`);
