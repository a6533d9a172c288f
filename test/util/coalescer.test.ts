/**
 * The write coalescer (src/util/coalescer.ts), alone: its flush function is a fake that records
 * each batch and settles only when the test says so. No sockets, no database; milliseconds.
 *
 * Items are named after their request ("b1" is request b's second item), so a batch shows which
 * requests it joined, in which order.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { Coalescer, type CoalescerOptions } from "../../src/util/coalescer.js";

interface Flush {
  items: string[];
  /** Answers every item with `<item>!`, in order. */
  succeed(): void;
  fail(err: unknown): void;
}

/** A coalescer over a fake flush function, and a log of what it flushed. */
function setUp(options: CoalescerOptions) {
  const flushes: Flush[] = [];
  let running = 0;
  let mostRunning = 0;
  const coalescer = new Coalescer<string, string>(
    (items) =>
      new Promise<string[]>((resolve, reject) => {
        running++;
        mostRunning = Math.max(mostRunning, running);
        const done = () => running--;
        flushes.push({
          items: [...items],
          succeed: () => {
            done();
            resolve(items.map((x) => `${x}!`));
          },
          fail: (err) => {
            done();
            reject(err);
          },
        });
      }),
    options,
  );
  return { coalescer, flushes, mostRunning: () => mostRunning };
}

/** Request `name` of `size` items: ["<name>0", "<name>1", ...]. */
const request = (name: string, size: number) => Array.from({ length: size }, (_, i) => `${name}${i}`);

/** Lets every promise reaction that is due run. */
const settle = () => new Promise((r) => setImmediate(r));

describe("Coalescer batches", () => {
  // Every request is submitted at once, while nothing runs; then the running flushes succeed one at
  // a time, oldest first, until none is left. `batches` is every batch, in the order they started.
  const cases: Array<{ name: string; options: CoalescerOptions; requests: Array<[string, number]>; batches: string[][] }> = [
    {
      name: "a request alone goes out at once; those behind a busy slot share the next batch",
      options: { concurrency: 1, maxItems: 100, maxWaitMs: 60_000 },
      requests: [
        ["a", 1],
        ["b", 2],
        ["c", 1],
      ],
      batches: [["a0"], ["b0", "b1", "c0"]],
    },
    {
      name: "as many go out at once as there are slots",
      options: { concurrency: 3, maxItems: 100, maxWaitMs: 60_000 },
      requests: [
        ["a", 1],
        ["b", 1],
        ["c", 1],
        ["d", 1],
        ["e", 1],
      ],
      batches: [["a0"], ["b0"], ["c0"], ["d0", "e0"]],
    },
    {
      name: "maxItems splits the waiting requests into batches, never a request",
      options: { concurrency: 1, maxItems: 5, maxWaitMs: 60_000 },
      requests: [
        ["a", 1],
        ["b", 2],
        ["c", 2],
        ["d", 3],
        ["e", 2],
        ["f", 1],
      ],
      batches: [["a0"], ["b0", "b1", "c0", "c1"], ["d0", "d1", "d2", "e0", "e1"], ["f0"]],
    },
    {
      name: "a request larger than maxItems goes whole, in a batch of its own",
      options: { concurrency: 1, maxItems: 3, maxWaitMs: 60_000 },
      requests: [
        ["a", 1],
        ["b", 5],
        ["c", 1],
      ],
      batches: [["a0"], ["b0", "b1", "b2", "b3", "b4"], ["c0"]],
    },
    {
      name: "a batch takes requests in the order they came, and stops at the first that does not fit",
      options: { concurrency: 1, maxItems: 4, maxWaitMs: 60_000 },
      requests: [
        ["a", 1],
        ["b", 3],
        ["c", 2],
        ["d", 1],
      ],
      batches: [["a0"], ["b0", "b1", "b2"], ["c0", "c1", "d0"]],
    },
  ];

  it.each(cases)("$name", async ({ options, requests, batches }) => {
    const { coalescer, flushes, mostRunning } = setUp(options);
    const answers = requests.map(([name, size]) => coalescer.submit(request(name, size)));
    for (let done = 0; done < flushes.length; done++) {
      await settle();
      flushes[done]!.succeed();
      await settle();
    }
    expect(flushes.map((f) => f.items)).toEqual(batches);
    expect(mostRunning()).toBeLessThanOrEqual(options.concurrency);
    // Every caller gets the results of its own items, in its order.
    for (const [k, [name, size]] of requests.entries()) {
      await expect(answers[k]).resolves.toEqual(request(name, size).map((x) => `${x}!`));
    }
  });
});

describe("Coalescer", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("an empty request is answered at once, without a flush", async () => {
    const { coalescer, flushes } = setUp({ concurrency: 1, maxItems: 10, maxWaitMs: 1 });
    await expect(coalescer.submit([])).resolves.toEqual([]);
    expect(flushes).toHaveLength(0);
  });

  it("with every slot busy, the waiting requests still go out after maxWaitMs, in one batch", async () => {
    vi.useFakeTimers();
    const { coalescer, flushes } = setUp({ concurrency: 1, maxItems: 100, maxWaitMs: 50 });
    void coalescer.submit(request("a", 1)); // takes the only slot, and never finishes here
    const b = coalescer.submit(request("b", 1));
    const c = coalescer.submit(request("c", 2));
    await vi.advanceTimersByTimeAsync(49);
    expect(flushes.map((f) => f.items)).toEqual([["a0"]]);
    await vi.advanceTimersByTimeAsync(1);
    expect(flushes.map((f) => f.items)).toEqual([["a0"], ["b0", "c0", "c1"]]);
    flushes[1]!.succeed();
    await expect(b).resolves.toEqual(["b0!"]);
    await expect(c).resolves.toEqual(["c0!", "c1!"]);
    // The timer is armed again for whatever waits next.
    void coalescer.submit(request("d", 1));
    await vi.advanceTimersByTimeAsync(50);
    expect(flushes.map((f) => f.items)).toEqual([["a0"], ["b0", "c0", "c1"], ["d0"]]);
  });

  it("a request that waits does not wait for the timer once a slot frees", async () => {
    vi.useFakeTimers();
    const { coalescer, flushes } = setUp({ concurrency: 1, maxItems: 100, maxWaitMs: 1_000 });
    void coalescer.submit(request("a", 1));
    void coalescer.submit(request("b", 1));
    flushes[0]!.succeed();
    await vi.advanceTimersByTimeAsync(0);
    expect(flushes.map((f) => f.items)).toEqual([["a0"], ["b0"]]);
  });

  it("a failing flush rejects exactly the callers of its batch, with its error; the others are answered", async () => {
    const { coalescer, flushes } = setUp({ concurrency: 1, maxItems: 100, maxWaitMs: 60_000 });
    const a = coalescer.submit(request("a", 1));
    const b = coalescer.submit(request("b", 2));
    const c = coalescer.submit(request("c", 1));
    flushes[0]!.succeed();
    await settle();
    expect(flushes[1]!.items).toEqual(["b0", "b1", "c0"]);
    const d = coalescer.submit(request("d", 1)); // waits behind the batch that will fail
    const outcomes = Promise.allSettled([a, b, c, d]);
    const boom = new Error("deadlock detected");
    flushes[1]!.fail(boom);
    await settle();
    flushes[2]!.succeed();
    expect(await outcomes).toEqual([
      { status: "fulfilled", value: ["a0!"] },
      { status: "rejected", reason: boom },
      { status: "rejected", reason: boom },
      { status: "fulfilled", value: ["d0!"] },
    ]);
    await expect(coalescer.drain()).resolves.toBeUndefined();
  });

  it("a flush function that throws instead of rejecting fails its batch the same way, and frees its slot", async () => {
    let calls = 0;
    const coalescer = new Coalescer<string, string>(
      (items) => {
        if (calls++ === 0) throw new Error("thrown");
        return Promise.resolve(items.map((x) => `${x}!`));
      },
      { concurrency: 1, maxItems: 100, maxWaitMs: 60_000 },
    );
    await expect(coalescer.submit(["a0"])).rejects.toThrow("thrown");
    await expect(coalescer.submit(["b0"])).resolves.toEqual(["b0!"]);
    expect(coalescer.pending).toBe(0);
    await expect(coalescer.drain()).resolves.toBeUndefined();
  });

  it("pending counts the items waiting and the items inside a flush, until their flush settles", async () => {
    const { coalescer, flushes } = setUp({ concurrency: 1, maxItems: 100, maxWaitMs: 60_000 });
    expect(coalescer.pending).toBe(0);
    void coalescer.submit(request("a", 3));
    expect(coalescer.pending).toBe(3); // inside a flush
    const b = coalescer.submit(request("b", 2)).catch((err: Error) => err.message);
    expect(coalescer.pending).toBe(5); // and waiting
    flushes[0]!.succeed();
    await settle();
    expect(coalescer.pending).toBe(2);
    flushes[1]!.fail(new Error("x"));
    await settle();
    expect(coalescer.pending).toBe(0);
    await expect(b).resolves.toBe("x");
  });

  it("drain resolves at once when idle, else once nothing waits or runs (including what joined meanwhile)", async () => {
    const { coalescer, flushes } = setUp({ concurrency: 1, maxItems: 100, maxWaitMs: 60_000 });
    await expect(coalescer.drain()).resolves.toBeUndefined();

    const a = coalescer.submit(request("a", 1));
    let drained = false;
    const draining = coalescer.drain().then(() => (drained = true));
    const b = coalescer.submit(request("b", 1)); // joins while draining
    flushes[0]!.succeed();
    await settle();
    expect(drained).toBe(false); // b's batch runs now
    expect(flushes).toHaveLength(2);
    flushes[1]!.succeed();
    await draining;
    expect(drained).toBe(true);
    await expect(Promise.all([a, b])).resolves.toEqual([["a0!"], ["b0!"]]);
  });
});
