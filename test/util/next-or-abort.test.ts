import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { nextOrAbort } from "../../src/util/next-or-abort.js";

async function* count(n: number) {
  for (let i = 0; i < n; i++) yield i;
}

describe("nextOrAbort", () => {
  it("gives every result of the iterator in order, then done, and leaves no abort listener behind", async () => {
    const signal = new AbortController().signal;
    const it = count(1_000);
    const seen: number[] = [];
    for (;;) {
      const r = await nextOrAbort(it, signal);
      if (r === "aborted") throw new Error("not aborted");
      if (r.done) break;
      seen.push(r.value);
      // The regression it exists for: a listener (or a reaction) per message kept every message.
      expect(getEventListeners(signal, "abort")).toHaveLength(0);
    }
    expect(seen).toEqual(Array.from({ length: 1_000 }, (_, i) => i));
  });

  it("answers 'aborted' while the iterator is still waiting, and at once when the signal has already aborted", async () => {
    const controller = new AbortController();
    let release!: () => void;
    const stuck: AsyncIterator<number> = { next: () => new Promise((resolve) => (release = () => resolve({ done: false, value: 1 }))) };
    const pending = nextOrAbort(stuck, controller.signal);
    controller.abort();
    await expect(pending).resolves.toBe("aborted");
    release(); // the late result is dropped, not thrown
    await expect(nextOrAbort(count(1), controller.signal)).resolves.toBe("aborted");
  });

  it("passes the iterator's failure on, and removes its listener then too", async () => {
    const signal = new AbortController().signal;
    const failing: AsyncIterator<number> = { next: () => Promise.reject(new Error("boom")) };
    await expect(nextOrAbort(failing, signal)).rejects.toThrow("boom");
    expect(getEventListeners(signal, "abort")).toHaveLength(0);
  });
});
