/**
 * Coalesces concurrent requests into shared batches. A request is flushed at once while fewer
 * than `concurrency` flushes are running; otherwise it waits and joins the next batch, which
 * starts as soon as a running flush ends (or `maxWaitMs` passes) and takes up to `maxItems`.
 * At low load this adds no latency; at high load many callers share one round trip.
 */
export interface CoalescerOptions {
  concurrency: number;
  maxItems: number;
  maxWaitMs: number;
}

interface Pending<T, R> {
  items: T[];
  resolve: (r: R[]) => void;
  reject: (e: unknown) => void;
}

export class Coalescer<T, R> {
  private queue: Pending<T, R>[] = [];
  private queuedItems = 0;
  private flushingItems = 0;
  private running = 0;
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly flushBatch: (items: T[]) => Promise<R[]>,
    private readonly options: CoalescerOptions,
  ) {}

  /** Resolves with one result per item, in order. */
  submit(items: T[]): Promise<R[]> {
    if (items.length === 0) return Promise.resolve([]);
    return new Promise<R[]>((resolve, reject) => {
      this.queue.push({ items, resolve, reject });
      this.queuedItems += items.length;
      this.pump();
    });
  }

  /** Items waiting or being flushed. */
  get pending(): number {
    return this.queuedItems + this.flushingItems;
  }

  /** Resolves once nothing is queued or running. */
  drain(): Promise<void> {
    if (this.running === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private pump(): void {
    while (this.queue.length > 0 && this.running < this.options.concurrency) this.flush();
    if (this.queue.length > 0 && !this.timer) {
      // All slots busy: a batch still goes out after maxWaitMs, so nobody waits on a slow flush
      // for longer than that plus one round trip.
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (this.queue.length > 0) this.flush();
      }, this.options.maxWaitMs);
    }
  }

  private flush(): void {
    const batch: Pending<T, R>[] = [];
    let n = 0;
    while (this.queue.length > 0 && (batch.length === 0 || n + this.queue[0]!.items.length <= this.options.maxItems)) {
      const p = this.queue.shift()!;
      batch.push(p);
      n += p.items.length;
    }
    this.queuedItems -= n;
    this.flushingItems += n;
    const items = batch.length === 1 ? batch[0]!.items : batch.flatMap((p) => p.items);
    this.running++;
    // A flush function that throws instead of returning a rejected promise fails its batch alike.
    new Promise<R[]>((resolve) => resolve(this.flushBatch(items)))
      .then(
        (results) => {
          let offset = 0;
          for (const p of batch) {
            p.resolve(results.slice(offset, offset + p.items.length));
            offset += p.items.length;
          }
        },
        (err) => batch.forEach((p) => p.reject(err)),
      )
      .finally(() => {
        this.running--;
        this.flushingItems -= n;
        if (this.queue.length > 0) this.pump();
        else if (this.running === 0) this.idleWaiters.splice(0).forEach((r) => r());
      });
  }
}
