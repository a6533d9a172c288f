/** A bare grpc-js server with one echo method: no protobuf, no handler work. The benchmark
 * measures it next to the real server, as the transport's floor. */
import * as grpc from "@grpc/grpc-js";

export const TRIVIAL_PATH = "/bench.Trivial/Echo";

export async function startTrivialEcho(): Promise<{ port: number; close(): Promise<void> }> {
  const server = new grpc.Server();
  const identity = (b: Buffer) => b;
  server.addService(
    {
      echo: {
        path: TRIVIAL_PATH,
        requestStream: false,
        responseStream: false,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
      },
    },
    { echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request) },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, close: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
}
