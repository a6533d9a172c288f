/**
 * Readers that stop reading, in a process of their own (as they would be on other machines, so
 * that what their clients buffer does not slow the process that measures page loads):
 * `node stalled-exporter.js <address> <count> <experiment key> [batch size]` opens `count`
 * ExportAssignments calls, each on its own connection, reads one message of each and then reads
 * nothing more. It prints one JSON line, `{"stalled": n, "failed": [...]}`, once every call has
 * its first message (or failed); then `{"settled": m}` once the messages its clients buffered
 * (m in all: grpc-js reads ahead of its reader) stopped growing for a second, that is once the
 * server stopped sending; and holds the calls open until stdin closes or SIGTERM, then cancels
 * them and exits.
 */
import { createClient, ExperimentService, type ExportAssignmentsResponse } from "assignment-client";

const [address, count = "50", experimentKey = "big", batchSize = "2000"] = process.argv.slice(2);
if (!address) {
  process.stderr.write("usage: stalled-exporter <address> <count> <experiment key> [batch size]\n");
  process.exit(2);
}

const calls = await Promise.allSettled(
  Array.from({ length: Number(count) }, async () => {
    const client = createClient(ExperimentService, address, { retry: false, channelOptions: { "grpc.use_local_subchannel_pool": 1 } });
    const call = client.exportAssignments({ experimentKey, batchSize: Number(batchSize) }) as AsyncIterable<ExportAssignmentsResponse> & {
      cancel(): void;
      on(event: "error", f: () => void): void;
    };
    call.on("error", () => {}); // nobody reads: a late error must not be an uncaught 'error' event
    const first = await call[Symbol.asyncIterator]().next();
    if (first.done) throw new Error("the export ended after its first message");
    return {
      buffered: () => (call as unknown as { readableLength: number }).readableLength,
      stop() {
        call.cancel();
        client.close();
      },
    };
  }),
);
const failed = calls.filter((c) => c.status === "rejected").map((c) => String((c as PromiseRejectedResult).reason));
process.stdout.write(`${JSON.stringify({ stalled: calls.length - failed.length, failed })}\n`);

const stop = () => {
  for (const c of calls) if (c.status === "fulfilled") c.value.stop();
  process.exit(0);
};
process.once("SIGTERM", stop);
process.stdin.on("end", stop).on("close", stop).resume();

// Settled: nothing more arrived for a second (at most 60 s of waiting).
const buffered = () => calls.reduce((n, c) => n + (c.status === "fulfilled" ? c.value.buffered() : 0), 0);
let last = -1;
let since = Date.now();
for (const started = Date.now(); Date.now() - started < 60_000; ) {
  await new Promise((r) => setTimeout(r, 100));
  const now = buffered();
  if (now !== last) [last, since] = [now, Date.now()];
  else if (Date.now() - since >= 1_000) break;
}
process.stdout.write(`${JSON.stringify({ settled: last })}\n`);
