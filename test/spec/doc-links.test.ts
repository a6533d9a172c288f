/**
 * Every relative link in the repository's Markdown resolves (issue: "from a fresh clone, every
 * README link resolves"): the file or folder exists inside the repository, and a #fragment names
 * a heading of the target (GitHub's anchors: lower case, punctuation dropped, spaces to dashes).
 * Links to other sites are not followed (no network here).
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT as ROOT_URL_PATH } from "../cli/run-cli.js";

const REPO_ROOT = path.resolve(ROOT_URL_PATH);

const SKIP = new Set(["node_modules", ".git", "gen", "dist", "data"]);

function markdownFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (SKIP.has(name)) continue;
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...markdownFiles(p));
    else if (name.endsWith(".md")) out.push(p);
  }
  return out;
}

/** GitHub's anchor of a heading. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[`*_~]/g, "")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/[^\p{L}\p{N}\- ]/gu, "")
    .replace(/ /g, "-");
}

function anchorsOf(file: string): Set<string> {
  const text = readFileSync(file, "utf8").replace(/^```[\s\S]*?^```/gm, "");
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of text.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = slug(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

describe("Markdown links", () => {
  const files = markdownFiles(REPO_ROOT);

  it("finds the documents (README, SPEC, BENCHMARKS, RELIABILITY, docs/, client READMEs)", () => {
    const rel = files.map((f) => path.relative(REPO_ROOT, f));
    for (const f of ["README.md", "spec/SPEC.md", "BENCHMARKS.md", "RELIABILITY.md"]) expect(rel).toContain(f);
  });

  it("every relative link names a file of the repository, and every #fragment a heading there", () => {
    const broken: string[] = [];
    let checked = 0;
    for (const file of files) {
      const text = readFileSync(file, "utf8")
        .replace(/^```[\s\S]*?^```/gm, "")
        .replace(/`[^`\n]*`/g, "");
      for (const m of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
        const link = m[1]!;
        if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // https:, mailto:, …
        checked++;
        const [target = "", fragment] = link.split("#", 2);
        const resolved = target === "" ? file : path.resolve(path.dirname(file), decodeURIComponent(target));
        const where = `${path.relative(REPO_ROOT, file)}: (${link})`;
        if (!resolved.startsWith(REPO_ROOT + path.sep) && resolved !== REPO_ROOT) broken.push(`${where} leaves the repository`);
        else if (!existsSync(resolved)) broken.push(`${where} does not exist`);
        else if (fragment && resolved.endsWith(".md") && !anchorsOf(resolved).has(fragment))
          broken.push(`${where}: no heading #${fragment}`);
      }
    }
    expect(broken).toEqual([]);
    expect(checked).toBeGreaterThan(10);
  });
});
