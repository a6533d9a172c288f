/**
 * The iterator's next result, or "aborted" as soon as `signal` aborts (at once if it already has),
 * whichever comes first.
 *
 * Unlike `Promise.race([it.next(), aborted])` with one long-lived `aborted` promise, this leaves
 * nothing behind: every race adds a reaction to the still-pending promise, and each reaction
 * keeps its result (a whole stream message) reachable until that promise settles, which for a
 * server's shutdown promise is never. Here the abort listener is removed as soon as the next
 * result arrives.
 */
export function nextOrAbort<T>(it: AsyncIterator<T>, signal: AbortSignal): Promise<IteratorResult<T> | "aborted"> {
  if (signal.aborted) return Promise.resolve("aborted");
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve("aborted");
    signal.addEventListener("abort", onAbort, { once: true });
    it.next().then(
      (result) => {
        signal.removeEventListener("abort", onAbort);
        resolve(result);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}
