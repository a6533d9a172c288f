import type { EventLog } from "../store/event-log.js";

export interface EventSequencerOptions {
  /** Pause between sequencer steps; every server runs steps, one at a time across them. */
  intervalMs: number;
  /** Retention (SPEC.md "Assignment events"): events older than this are pruned; undefined: no limit by age. */
  retentionMs?: number;
  /** Retention: at most this many newest events are kept; undefined: no limit by number. */
  retentionEvents?: number;
  /** Pause between pruning passes. */
  pruneIntervalMs?: number;
  log: (msg: string, err?: unknown) => void;
}

/**
 * Runs the event log's sequencer steps (EventLog.sequence) in a loop, wakes the watchers of this
 * process after a step that numbered events, and prunes what retention no longer keeps. Every
 * server runs the loop; the steps run one at a time across servers (an advisory lock per step), so
 * a server that dies takes nothing with it: the next step of any other server carries on. Watchers
 * of a server whose steps found the lock taken wake on their poll interval instead.
 */
export class EventSequencer {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastPrune = 0;
  private readonly waiters = new Set<() => void>();
  private running: Promise<void> | undefined;

  constructor(
    private readonly log: EventLog,
    private readonly options: EventSequencerOptions,
  ) {}

  start(): void {
    this.schedule(0);
  }

  /** Resolves at the next step that numbered events, or
   * after `ms`, or when `signal` aborts. */
  waitForEvents(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.waiters.add(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  /** Runs one step now (tests, the stats of a caller who wants its own writes counted). */
  async step(): Promise<number> {
    const n = await this.log.sequence();
    if (n > 0) this.wake();
    return n;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.schedule(this.options.intervalMs);
      });
    }, ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      await this.step();
      const o = this.options;
      if (
        (o.retentionMs !== undefined || o.retentionEvents !== undefined) &&
        Date.now() - this.lastPrune >= (o.pruneIntervalMs ?? 60_000)
      ) {
        this.lastPrune = Date.now();
        await this.log.prune(o.retentionMs, o.retentionEvents);
      }
    } catch (err) {
      this.options.log("assignment event sequencer step failed (retried)", err);
    }
  }
}
