import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AssignmentService } from "../../gen/ts/assignment/v1/assignment_service_pb.js";
import { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { JobService } from "../../gen/ts/assignment/v1/job_service_pb.js";

/** The tab's token: kept in sessionStorage only (gone when the tab closes), never in a cookie or localStorage. */
const TOKEN_KEY = "assignment-console-token";

export const session = {
  token(): string | null {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set(token: string) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

const auth: Interceptor = (next) => (req) => {
  const token = session.token();
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};

// The same RPCs every client uses, over the server's HTTP port (the Connect protocol, binary).
const transport = createConnectTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [auth],
});

export const experiments = createClient(ExperimentService, transport);
export const assignments = createClient(AssignmentService, transport);
export const jobs = createClient(JobService, transport);

/** An error said in words for the people using the console; the server's own message follows. */
export function describeError(err: unknown): string {
  const e = ConnectError.from(err);
  const msg = e.rawMessage;
  switch (e.code) {
    case Code.Aborted:
      return `Someone else changed this meanwhile, so nothing was changed. Reload to see their change, then try again. (${msg})`;
    case Code.PermissionDenied:
      return `Your token may not do this. (${msg})`;
    case Code.Unauthenticated:
      return `The server did not accept the token: sign in again. (${msg})`;
    case Code.InvalidArgument:
      return `Not accepted: ${msg}`;
    case Code.FailedPrecondition:
      return `Not possible now: ${msg}`;
    case Code.NotFound:
      return `Not found: ${msg}`;
    case Code.ResourceExhausted:
      return `Not enough room: ${msg}`;
    case Code.Unavailable:
      return `The server cannot be reached or is not ready; try again. (${msg})`;
    default:
      return `${Code[e.code] ?? e.code}: ${msg}`;
  }
}

export type Role = "admin" | "operator" | "reader" | "assign";

/**
 * The token's role, found with calls every client may make: no RPC names the caller's role, so the
 * console asks for what each role may do with requests the server refuses as invalid before they
 * change anything (an empty key): PERMISSION_DENIED means the role may not, INVALID_ARGUMENT that
 * it may. The server checks the role on every call anyway; this only decides what the page offers.
 */
export async function probeRole(): Promise<Role> {
  const may = async (call: () => Promise<unknown>): Promise<boolean> => {
    try {
      await call();
      return true;
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.PermissionDenied) return false;
      // Refused for what it asked, past the role check: the role may.
      if (e.code === Code.InvalidArgument || e.code === Code.NotFound) return true;
      throw err; // not signed in (UNAUTHENTICATED), or the server cannot answer: no role
    }
  };
  // Three small calls at once (they change nothing): the page waits for one round trip, not three.
  const [reads, administers, operates] = await Promise.all([
    may(() => experiments.listNamespaces({})),
    may(() => experiments.createNamespace({ key: "" })),
    may(() => experiments.setOverrides({ experimentKey: "" })),
  ]);
  if (!reads) return "assign";
  if (administers) return "admin";
  return operates ? "operator" : "reader";
}
