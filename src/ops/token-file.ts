/**
 * The token file (TOKENS_FILE): one token a line, as `<name> <role> <token>` separated by spaces
 * or tabs; blank lines and lines starting with `#` are ignored.
 *
 *     # name        role      token
 *     alice         admin     3f9c0c4e6a1d4b8f9e2a7c5d1b0e8f6a
 *     release-bot   operator  sha256:2c157db7e5f42a93cdf20b74b1b690227513bca81f7fec38f2fb2729aef362d4
 *
 * - name: `[A-Za-z0-9][A-Za-z0-9._@-]{0,63}`, unique; it names the caller in logs and the audit
 *   log (`anonymous`, `ADMIN_TOKEN` and `ASSIGN_TOKEN` are taken);
 * - role: admin, operator, reader or assign (src/service/roles.ts);
 * - token: at least 16 printable ASCII characters without spaces, unique; or `sha256:` and the 64
 *   hex digits of the token's SHA-256, so that the file need not hold the token itself.
 */
import { ROLES, type Role } from "../service/roles.js";
import { ENV_TOKEN_NAMES, type TokenEntry, tokenDigest } from "./auth.js";

export class TokenFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TokenFileError";
  }
}

export const TOKEN_NAME_RULE = "must match [A-Za-z0-9][A-Za-z0-9._@-]{0,63}";
export const MIN_TOKEN_LENGTH = 16;
const RESERVED_NAMES = new Set<string>(["anonymous", ENV_TOKEN_NAMES.admin, ENV_TOKEN_NAMES.assign]);

/** The entries of a token file's text; throws TokenFileError naming the line at fault. */
export function parseTokenFile(text: string): TokenEntry[] {
  const entries: TokenEntry[] = [];
  const lineOf = new Map<TokenEntry, number>();
  const lines = text.replace(/^\uFEFF/, "").split("\n");
  lines.forEach((raw, i) => {
    const n = i + 1;
    const line = raw.replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) return;
    const fail = (what: string): never => {
      throw new TokenFileError(`line ${n}: ${what}`);
    };
    const fields = line.split(/[ \t]+/);
    if (fields.length !== 3) fail(`expected "<name> <role> <token>", found ${fields.length} field${fields.length === 1 ? "" : "s"}`);
    const [name, role, token] = fields as [string, string, string];
    if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(name)) fail(`the name ${JSON.stringify(name)} ${TOKEN_NAME_RULE}`);
    if (RESERVED_NAMES.has(name)) fail(`the name "${name}" is reserved (${[...RESERVED_NAMES].join(", ")})`);
    if (!(ROLES as readonly string[]).includes(role)) fail(`unknown role ${JSON.stringify(role)} (one of ${ROLES.join(", ")})`);
    let digest: Buffer;
    const hashed = /^sha256:(.*)$/.exec(token);
    if (hashed) {
      if (!/^[0-9a-fA-F]{64}$/.test(hashed[1]!))
        fail(`token "${name}": after "sha256:" must come the 64 hex digits of the token's SHA-256`);
      digest = Buffer.from(hashed[1]!, "hex");
    } else {
      // The token itself is never repeated in a message.
      if (!/^[\x21-\x7e]+$/.test(token)) fail(`token "${name}": must be printable ASCII without spaces`);
      if (token.length < MIN_TOKEN_LENGTH) fail(`token "${name}": must be at least ${MIN_TOKEN_LENGTH} characters (got ${token.length})`);
      digest = tokenDigest(token);
    }
    const sameName = entries.find((e) => e.name === name);
    if (sameName) fail(`the name "${name}" is already given on line ${lineOf.get(sameName)}`);
    const sameToken = entries.find((e) => e.digest.equals(digest));
    if (sameToken) fail(`token "${name}" is the same token as "${sameToken.name}" on line ${lineOf.get(sameToken)}`);
    const entry: TokenEntry = { name, role: role as Role, digest };
    entries.push(entry);
    lineOf.set(entry, n);
  });
  if (entries.length === 0) throw new TokenFileError("names no token (every line is blank or a comment)");
  return entries;
}
