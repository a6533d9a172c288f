/**
 * The token file (TOKENS_FILE): its format, and the clear refusal of a bad file, naming the line,
 * by loadConfig (the server does not start) and by the parser a reload uses.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { parseTokenFile, TokenFileError } from "../../src/ops/token-file.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "token-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const fileWith = (text: string) => {
  const file = path.join(dir, `tokens-${++files}`);
  writeFileSync(file, text);
  return file;
};
const sha256 = (s: string) => createHash("sha256").update(s).digest();

const ALICE = "alice-secret-0123456789";
const BOT = "release-bot-secret-0123456789";
const GOOD = `# name role token
alice        admin     ${ALICE}

release-bot\toperator\tsha256:${sha256(BOT).toString("hex")}
dashboard    reader    dashboard-secret-0123456789
web          assign    web-secret-0123456789\r
`;

describe("parseTokenFile", () => {
  it("reads name, role and token (or the token's SHA-256) a line; blank lines and comments are skipped; CRLF is fine", () => {
    const entries = parseTokenFile(GOOD);
    expect(entries.map((e) => [e.name, e.role])).toEqual([
      ["alice", "admin"],
      ["release-bot", "operator"],
      ["dashboard", "reader"],
      ["web", "assign"],
    ]);
    // What is kept is the SHA-256 of the token, whichever way the file gave it.
    expect(entries[0]!.digest.equals(sha256(ALICE))).toBe(true);
    expect(entries[1]!.digest.equals(sha256(BOT))).toBe(true);
    expect(entries[3]!.digest.equals(sha256("web-secret-0123456789"))).toBe(true);
  });

  it.each([
    ["a line of two fields", "alice admin\n", /^line 1: expected "<name> <role> <token>", found 2 fields$/],
    ["a line of four fields", `# x\nalice admin ${ALICE} extra\n`, /^line 2: expected "<name> <role> <token>", found 4 fields$/],
    ["an unknown role", `\n\nalice superuser ${ALICE}\n`, /^line 3: unknown role "superuser" \(one of admin, operator, reader, assign\)$/],
    ["a role in the wrong case", `alice Admin ${ALICE}\n`, /^line 1: unknown role "Admin"/],
    ["a bad name", `al/ice admin ${ALICE}\n`, /^line 1: the name "al\/ice" must match/],
    ["a reserved name", `ADMIN_TOKEN admin ${ALICE}\n`, /^line 1: the name "ADMIN_TOKEN" is reserved/],
    ["a short token", "alice admin short\n", /^line 1: token "alice": must be at least 16 characters \(got 5\)$/],
    ["a bad digest", "alice admin sha256:abc\n", /^line 1: token "alice": after "sha256:" must come the 64 hex digits/],
    [
      "a name given twice",
      `alice admin ${ALICE}\nbob reader ${BOT}\nalice reader other-secret-0123456789\n`,
      /^line 3: the name "alice" is already given on line 1$/,
    ],
    ["a token given twice", `alice admin ${ALICE}\nbob reader ${ALICE}\n`, /^line 2: token "bob" is the same token as "alice" on line 1$/],
    [
      "a token given twice, once as its digest",
      `alice admin ${ALICE}\nbob reader sha256:${sha256(ALICE).toString("hex")}\n`,
      /^line 2: token "bob" is the same token as "alice" on line 1$/,
    ],
    ["an empty file", "", /^names no token \(every line is blank or a comment\)$/],
    ["a file of comments", "# nobody yet\n\n   \n", /^names no token/],
  ])("refuses %s, naming the line", (_what, text, message) => {
    expect(() => parseTokenFile(text)).toThrow(TokenFileError);
    expect(() => parseTokenFile(text)).toThrow(message);
  });

  it("never repeats a token in a message", () => {
    for (const text of [
      `alice admin ${ALICE}\nbob reader ${ALICE}\n`,
      `alice admin ${ALICE} x\n`,
      "alice admin tooshort-secret\n",
      "alice admin secret\u00e9-0123456789\n",
    ]) {
      const message = (() => {
        try {
          parseTokenFile(text);
        } catch (err) {
          return (err as Error).message;
        }
        return "accepted";
      })();
      expect(message).toMatch(/^line \d: /);
      expect(message).not.toMatch(/secret/);
    }
  });
});

describe("TOKENS_FILE in loadConfig", () => {
  const DB = { DATABASE_URL: "postgres://db/x" };

  it("loads the file's tokens; an admin, operator or reader token is enough to start on a real database", () => {
    const c = loadConfig([], { ...DB, TOKENS_FILE: fileWith(GOOD) });
    expect(c.tokensFile).toContain("tokens-");
    expect(c.server.tokens!.map((t) => t.name)).toEqual(["alice", "release-bot", "dashboard", "web"]);
    expect(c.server.insecure).toBe(false);
    expect(loadConfig(["--tokens-file", fileWith(`ops operator ${BOT}\n`)], DB).server.insecure).toBe(false);
    // Only assign tokens leave ExperimentService open: refused without insecure development mode.
    expect(() => loadConfig([], { ...DB, TOKENS_FILE: fileWith(`web assign ${BOT}\n`) })).toThrow(/refusing to start/);
    // ADMIN_TOKEN and ASSIGN_TOKEN still work beside the file.
    const both = loadConfig([], { ...DB, TOKENS_FILE: fileWith(`ops operator ${BOT}\n`), ADMIN_TOKEN: "a", ASSIGN_TOKEN: "b" });
    expect(both.server).toMatchObject({ adminToken: "a", assignToken: "b" });
  });

  it.each([
    [
      "a bad line",
      `alice admin ${ALICE}\nbob\n`,
      /TOKENS_FILE \(--tokens-file\): .*tokens-\d+ line 2: expected "<name> <role> <token>", found 1 field$/,
    ],
    ["an unknown role", `alice root ${ALICE}\n`, /tokens-\d+ line 1: unknown role "root"/],
    ["a duplicate name", `alice admin ${ALICE}\nalice reader ${BOT}\n`, /line 2: the name "alice" is already given on line 1/],
    ["a duplicate token", `alice admin ${ALICE}\nbob reader ${ALICE}\n`, /line 2: token "bob" is the same token as "alice" on line 1/],
    ["an empty file", "", /tokens-\d+ names no token/],
  ])("refuses to start on %s (ConfigError naming the file and line)", (_what, text, message) => {
    const file = fileWith(text);
    expect(() => loadConfig([], { ...DB, TOKENS_FILE: file })).toThrow(ConfigError);
    expect(() => loadConfig([], { ...DB, TOKENS_FILE: file })).toThrow(message);
  });

  it("refuses a file it cannot read, and a file token equal to ADMIN_TOKEN", () => {
    expect(() => loadConfig([], { ...DB, TOKENS_FILE: path.join(dir, "missing") })).toThrow(
      /TOKENS_FILE \(--tokens-file\): cannot read .*missing \(ENOENT\)/,
    );
    expect(() => loadConfig([], { ...DB, TOKENS_FILE: fileWith(`alice admin ${ALICE}\n`), ADMIN_TOKEN: ALICE })).toThrow(
      /tokens "alice" and "ADMIN_TOKEN" are the same token/,
    );
  });
});
