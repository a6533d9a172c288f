/**
 * The items of `source`, as long as each arrives within `idleMs` of asking for it: when one does
 * not, the iteration throws `onIdle()` (and asks the source to return). Bounds how long a stream
 * whose peer stopped sending can hold what its consumer holds meanwhile.
 */
export async function* withIdleDeadline<T>(source: AsyncIterable<T>, idleMs: number, onIdle: () => Error): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<"idle">((resolve) => (timer = setTimeout(() => resolve("idle"), idleMs)));
    let next: IteratorResult<T> | "idle";
    try {
      next = await Promise.race([it.next(), idle]);
    } finally {
      clearTimeout(timer);
    }
    if (next === "idle") {
      it.return?.()?.catch(() => {});
      throw onIdle();
    }
    if (next.done) return;
    yield next.value;
  }
}
