import { createHash, timingSafeEqual } from "node:crypto";
import type { DescMethod } from "@bufbuild/protobuf";
import { unauthenticated } from "../errors.js";
import type { Interceptor, RequestHeaders } from "../service/handler-types.js";

export interface AuthTokens {
  /** Required for ExperimentService (administration); absent: that service is open. */
  adminToken?: string;
  /** Required for AssignmentService when set (the admin token is accepted too). */
  assignToken?: string;
}

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/** The bearer token of `authorization: Bearer <token>`, or undefined. */
export function bearerToken(requestHeader: RequestHeaders): string | undefined {
  const value = requestHeader.get("authorization");
  if (value === null) return undefined;
  const m = /^Bearer[ \t]+(\S+)\s*$/i.exec(value);
  return m ? m[1] : undefined;
}

/**
 * A bindService interceptor demanding a bearer token (`authorization: Bearer <token>`) from every
 * call of the service, if `accepted` names any. Tokens are compared in constant time: both sides
 * are hashed to 32 bytes first, so neither their content nor their length leaks through timing.
 */
export function requireToken(serviceName: string, accepted: readonly (string | undefined)[]): Interceptor | undefined {
  const digests = accepted.filter((t): t is string => !!t).map(digest);
  if (digests.length === 0) return undefined;
  return (_method: DescMethod, requestHeader: RequestHeaders) => {
    const token = bearerToken(requestHeader);
    if (token === undefined) {
      throw unauthenticated(`${serviceName} needs a token: send the metadata "authorization: Bearer <token>"`);
    }
    const given = digest(token);
    let ok = false;
    for (const d of digests) ok = timingSafeEqual(given, d) || ok; // every candidate is compared
    if (!ok) throw unauthenticated(`${serviceName}: the bearer token is not valid`);
  };
}
