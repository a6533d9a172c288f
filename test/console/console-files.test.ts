/**
 * The console's files as the server reads them (src/connect/console-files.ts), from a scratch
 * folder: only files inside it, by their exact path under /console/, with their content types;
 * a folder without index.html is refused at start.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConsoleFiles } from "../../src/connect/console-files.js";

const root = mkdtempSync(join(tmpdir(), "console-files-"));
const dir = join(root, "dist");
mkdirSync(join(dir, "assets"), { recursive: true });
writeFileSync(join(dir, "index.html"), "<!doctype html><title>console</title>");
writeFileSync(join(dir, "assets", "index-abc123.js"), "console.log(1)");
writeFileSync(join(dir, "assets", "index-abc123.css"), "body{}");
writeFileSync(join(dir, "assets", "index-abc123.js.map"), "{}");
writeFileSync(join(root, "secret.txt"), "outside the console folder");
symlinkSync(join(root, "secret.txt"), join(dir, "link.txt"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("loadConsoleFiles", () => {
  const files = loadConsoleFiles(dir);

  it("answers the built files by their path under /console/, with their content types", () => {
    expect(files.get("/console/")?.body.toString()).toContain("<title>console</title>");
    expect(files.get("/console/")?.type).toBe("text/html; charset=utf-8");
    expect(files.get("/console/index.html")?.immutable).toBe(false);
    const js = files.get("/console/assets/index-abc123.js");
    expect([js?.type, js?.immutable]).toEqual(["text/javascript; charset=utf-8", true]);
    expect(files.get("/console/assets/index-abc123.css")?.type).toBe("text/css; charset=utf-8");
  });

  it("answers nothing else: other paths, encoded climbs, symlinks, source maps", () => {
    for (const path of [
      "/console/../secret.txt",
      "/console/%2e%2e/secret.txt",
      "/console/..%2fsecret.txt",
      "/console/assets/../../secret.txt",
      "/console/link.txt",
      "/console/assets/index-abc123.js.map",
      "/console/assets/",
      "/console/%",
      "/index.html",
      "/console",
    ]) {
      expect(files.get(path), path).toBeUndefined();
    }
  });

  it("refuses a folder without index.html", () => {
    expect(() => loadConsoleFiles(join(dir, "assets"))).toThrow(/no index\.html/);
  });
});
