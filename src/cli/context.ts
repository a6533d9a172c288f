import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import type { DescService } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { AssignmentService, createClient, ExperimentService, type Client } from "assignment-client";

/** A failure of the CLI's own making (bad input, unreadable file): exit code 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
}

export interface GlobalOptions {
  address: string;
  token?: string;
  timeout: number;
  tls?: boolean;
  caFile?: string;
  progress: boolean;
}

/** Milliseconds from "30s", "500ms", "2m" or a plain number of milliseconds. */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (!m) throw new UsageError(`--timeout: "${value}" is not a duration (e.g. 30s, 500ms, 2m, or milliseconds)`);
  const n = Number(m[1]);
  return Math.round(m[2] === "s" ? n * 1000 : m[2] === "m" ? n * 60_000 : n);
}

/** The clients a command needs, made from the global options. */
export class Context {
  readonly options: GlobalOptions;
  private admin: Client<typeof ExperimentService> | undefined;
  private assign: Client<typeof AssignmentService> | undefined;
  private readonly others = new Map<string, { close(): void }>();

  constructor(command: Command) {
    this.options = command.optsWithGlobals<GlobalOptions>();
  }

  private clientOptions() {
    const o = this.options;
    let credentials: grpc.ChannelCredentials | undefined;
    if (o.caFile) {
      let ca: Buffer;
      try {
        ca = readFileSync(o.caFile);
      } catch (err) {
        throw new UsageError(`--ca-file: cannot read ${o.caFile}: ${(err as Error).message}`);
      }
      credentials = grpc.credentials.createSsl(ca);
    } else if (o.tls) {
      credentials = grpc.credentials.createSsl();
    }
    // An empty token (ASSIGNMENT_TOKEN= in a shell or an env file) means none, as an unset one does.
    const token = o.token === "" ? undefined : o.token;
    if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) {
      throw new UsageError(
        "--token (ASSIGNMENT_TOKEN): must be printable ASCII without whitespace (check for a space or a newline around it)",
      );
    }
    return { timeoutMs: o.timeout, token, credentials };
  }

  get experiments(): Client<typeof ExperimentService> {
    return (this.admin ??= createClient(ExperimentService, this.options.address, this.clientOptions()));
  }

  get assignments(): Client<typeof AssignmentService> {
    return (this.assign ??= createClient(AssignmentService, this.options.address, this.clientOptions()));
  }

  /** A client of any other service, made once. */
  client<S extends DescService>(service: S): Client<S> {
    let c = this.others.get(service.typeName);
    if (!c) this.others.set(service.typeName, (c = createClient(service, this.options.address, this.clientOptions())));
    return c as Client<S>;
  }

  close(): void {
    for (const c of this.others.values()) c.close();
    this.admin?.close();
    this.assign?.close();
  }
}
