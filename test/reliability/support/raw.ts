/**
 * Raw gRPC calls: arbitrary bytes to any method path through grpc-js's generic client with
 * identity serializers (no protobuf on the client side), for malformed and oversized requests.
 */
import * as grpc from "@grpc/grpc-js";

export interface RawOutcome {
  /** gRPC status code (0 = OK). */
  code: number;
  details: string;
  /** Response messages received (unary: 0 or 1). */
  messages: Buffer[];
}

const identity = (b: Buffer) => b;

/** A generic client without message size limits of its own (-1), so the server's are what is tested. */
export function rawChannel(address: string): grpc.Client {
  return new grpc.Client(address, grpc.credentials.createInsecure(), {
    "grpc.max_send_message_length": -1,
    "grpc.max_receive_message_length": -1,
    "grpc.use_local_subchannel_pool": 1,
  });
}

const outcomeOf = (err: grpc.ServiceError | null, messages: Buffer[]): RawOutcome =>
  err ? { code: err.code ?? -1, details: err.details ?? err.message, messages } : { code: grpc.status.OK, details: "", messages };

/**
 * Sends `requests` (each already serialized) to `path` with the right call shape for the
 * method kind and collects the status and every response message. Bounded by `timeoutMs`.
 */
export function rawCall(
  client: grpc.Client,
  path: string,
  kind: "unary" | "server_streaming" | "client_streaming" | "bidi_streaming",
  requests: readonly Buffer[],
  timeoutMs = 20_000,
): Promise<RawOutcome> {
  const deadline = Date.now() + timeoutMs;
  const md = new grpc.Metadata();
  return new Promise<RawOutcome>((resolve) => {
    const messages: Buffer[] = [];
    switch (kind) {
      case "unary":
        client.makeUnaryRequest(path, identity, identity, requests[0] ?? Buffer.alloc(0), md, { deadline }, (err, res) => {
          if (res) messages.push(res);
          resolve(outcomeOf(err, messages));
        });
        return;
      case "server_streaming": {
        const call = client.makeServerStreamRequest(path, identity, identity, requests[0] ?? Buffer.alloc(0), md, { deadline });
        call.on("data", (m: Buffer) => messages.push(m));
        call.on("error", () => {});
        call.on("status", (s) => resolve({ code: s.code, details: s.details, messages }));
        return;
      }
      case "client_streaming": {
        const call = client.makeClientStreamRequest(path, identity, identity, md, { deadline }, (err, res) => {
          if (res) messages.push(res);
          resolve(outcomeOf(err, messages));
        });
        for (const r of requests) call.write(r);
        call.end();
        return;
      }
      case "bidi_streaming": {
        const call = client.makeBidiStreamRequest(path, identity, identity, md, { deadline });
        call.on("data", (m: Buffer) => messages.push(m));
        call.on("error", () => {});
        call.on("status", (s) => resolve({ code: s.code, details: s.details, messages }));
        for (const r of requests) call.write(r);
        call.end();
        return;
      }
    }
  });
}

/** grpc.health.v1.Health/Check for the whole server: true when it answers SERVING (1). */
export async function healthy(client: grpc.Client): Promise<boolean> {
  const r = await rawCall(client, "/grpc.health.v1.Health/Check", "unary", [Buffer.alloc(0)], 5_000);
  // HealthCheckResponse { status = SERVING (1) } is the two bytes 08 01.
  return r.code === grpc.status.OK && r.messages[0]?.equals(Buffer.from([0x08, 0x01])) === true;
}

/** A length-delimited protobuf field (`field` number, wire type 2) of `payloadBytes` bytes of
 * "a", as one Buffer: a valid message of exactly the size asked for when it is the only field. */
export function stringFieldMessage(field: number, totalBytes: number): Buffer {
  // tag (1 byte for field < 16) + varint length + payload = totalBytes
  for (let lenBytes = 1; lenBytes <= 5; lenBytes++) {
    const payload = totalBytes - 1 - lenBytes;
    if (payload < 0) break;
    const varint = encodeVarint(payload);
    if (varint.length === lenBytes) {
      const b = Buffer.alloc(totalBytes, 0x61);
      b[0] = (field << 3) | 2;
      varint.copy(b, 1);
      return b;
    }
  }
  throw new Error(`cannot build a message of ${totalBytes} bytes`);
}

function encodeVarint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
