import { createHash, timingSafeEqual } from "node:crypto";
import type { DescMethod } from "@bufbuild/protobuf";
import { permissionDenied, unauthenticated } from "../errors.js";
import type { Interceptor, RequestHeaders } from "../service/handler-types.js";
import { ANONYMOUS, type Caller, type Role, rolesFor } from "../service/roles.js";

/** A token the server accepts: its name (what logs and the audit name), its role, and the
 * SHA-256 of the token itself (the server keeps no token in the clear). */
export interface TokenEntry {
  readonly name: string;
  readonly role: Role;
  readonly digest: Buffer;
}

export const tokenDigest = (token: string): Buffer => createHash("sha256").update(token, "utf8").digest();

/** Names of the tokens given by environment variables; a token file may not use them. */
export const ENV_TOKEN_NAMES = { admin: "ADMIN_TOKEN", assign: "ASSIGN_TOKEN" } as const;

/** ADMIN_TOKEN and ASSIGN_TOKEN as entries: an `admin` and an `assign` token named after their variable. */
export function envTokens(adminToken: string | undefined, assignToken: string | undefined): TokenEntry[] {
  const out: TokenEntry[] = [];
  if (adminToken) out.push({ name: ENV_TOKEN_NAMES.admin, role: "admin", digest: tokenDigest(adminToken) });
  if (assignToken) out.push({ name: ENV_TOKEN_NAMES.assign, role: "assign", digest: tokenDigest(assignToken) });
  return out;
}

/** The tokens a server accepts at one time; each name and each token at most once. */
export class TokenSet {
  readonly entries: readonly TokenEntry[];

  /** Throws naming the duplicate, if a name or a token is given twice. */
  constructor(entries: readonly TokenEntry[]) {
    const names = new Set<string>();
    entries.forEach((e, i) => {
      if (names.has(e.name)) throw new Error(`the token name "${e.name}" is given twice`);
      names.add(e.name);
      const same = entries.findIndex((o) => o.digest.equals(e.digest));
      if (same < i) throw new Error(`tokens "${entries[same]!.name}" and "${e.name}" are the same token`);
    });
    this.entries = entries;
  }

  /** The entry of `token`, compared in constant time with every entry (both sides are SHA-256
   * digests, so neither a token's content nor its length leaks through timing). */
  find(token: string): TokenEntry | undefined {
    const given = tokenDigest(token);
    let found: TokenEntry | undefined;
    for (const e of this.entries) if (timingSafeEqual(given, e.digest)) found = e; // every entry is compared
    return found;
  }

  /** How many tokens of each role. */
  countByRole(): Record<Role, number> {
    const counts: Record<Role, number> = { admin: 0, operator: 0, reader: 0, assign: 0 };
    for (const e of this.entries) counts[e.role]++;
    return counts;
  }
}

/** What a call's `authorization` value holds. */
export type Authorization = { kind: "missing" } | { kind: "malformed"; problem: string } | { kind: "bearer"; token: string };

/**
 * Reads `authorization: Bearer <token>` (RFC 6750: the scheme in any case, one or more spaces, one
 * token of printable ASCII). What is wrong with a malformed value is said without repeating any of
 * it, since it may hold a secret.
 */
export function parseAuthorization(value: string | null): Authorization {
  if (value === null) return { kind: "missing" };
  if (value.length === 0) return { kind: "malformed", problem: "is empty" };
  const m = /^(\S+)( +)?([\s\S]*)$/.exec(value);
  if (!m || /^\s/.test(value)) return { kind: "malformed", problem: 'starts with whitespace instead of "Bearer"' };
  const [, scheme, spaces, rest] = m;
  if (scheme!.toLowerCase() !== "bearer") {
    return {
      kind: "malformed",
      problem: spaces === undefined ? 'holds no "Bearer " before the token' : "uses an authentication scheme other than Bearer",
    };
  }
  if (rest === "") return { kind: "malformed", problem: 'holds no token after "Bearer"' };
  if (spaces === undefined) return { kind: "malformed", problem: 'holds no space between "Bearer" and the token' };
  if (/\s/.test(rest!)) {
    return { kind: "malformed", problem: "holds whitespace in or around the token (a token is one word, with nothing around it)" };
  }
  if (!/^[\x21-\x7e]+$/.test(rest!)) return { kind: "malformed", problem: "holds characters a token cannot have (printable ASCII only)" };
  return { kind: "bearer", token: rest! };
}

export interface AuthPolicy {
  /** Services (type names) that take calls without a token: their callers are ANONYMOUS, and any
   * token they send is ignored. */
  open: ReadonlySet<string>;
  /** The tokens accepted now (a reload replaces them). */
  tokens(): TokenSet;
}

const roleList = (roles: readonly Role[]) =>
  roles.length === 1 ? `role ${roles[0]}` : `role ${roles.slice(0, -1).join(", ")} or ${roles[roles.length - 1]}`;

/**
 * The interceptor of every service, for every transport: a function of the method and the request
 * headers. Unknown or missing tokens are UNAUTHENTICATED (saying which: missing, malformed, or
 * not valid); a known token whose role may not call the method (METHOD_ROLES) is
 * PERMISSION_DENIED naming the roles that may.
 */
export function authenticator(policy: AuthPolicy): Interceptor {
  return (method: DescMethod, requestHeader: RequestHeaders): Caller => {
    const service = method.parent.typeName;
    if (policy.open.has(service)) return ANONYMOUS;
    const auth = parseAuthorization(requestHeader.get("authorization"));
    if (auth.kind === "missing") {
      throw unauthenticated(
        `${service} needs a token: the call carried no "authorization" metadata; send "authorization: Bearer <token>" ` +
          "(HTTP/2 drops a metadata value that begins or ends with whitespace, so a token with a space around it arrives as no token at all)",
      );
    }
    if (auth.kind === "malformed") {
      throw unauthenticated(
        `${service}: the "authorization" metadata is malformed: it ${auth.problem}; send "authorization: Bearer <token>"`,
      );
    }
    const entry = policy.tokens().find(auth.token);
    if (!entry) throw unauthenticated(`${service}: the bearer token is not valid (no token of this server matches it)`);
    const allowed = rolesFor(method);
    if (!allowed.includes(entry.role)) {
      throw permissionDenied(`${service}/${method.name} needs ${roleList(allowed)}; token "${entry.name}" has role ${entry.role}`);
    }
    return { name: entry.name, role: entry.role };
  };
}
