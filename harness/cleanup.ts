/**
 * Cleanup actions of whatever a test run or a benchmark started (servers, folders, databases):
 * run last-in-first-out, each at most once and bounded in time; a failing action is reported and
 * does not stop the others.
 *
 * With `exitBackstop`, the actions still pending when the process exits are fired then (at
 * 'exit' nothing can be awaited, so an action's synchronous part must do the real work: kill the
 * process, remove the folder; a returned promise only waits for it to be gone).
 */
export type CleanupAction = () => unknown;

export interface CleanupOptions {
  /** Prefixes the reports of failed actions. */
  name: string;
  /** Fire pending actions on process exit (see above); default false. */
  exitBackstop?: boolean;
  /** Longest wait for one action; default 20 s. */
  stepTimeoutMs?: number;
}

export class Cleanup {
  private readonly actions: Array<{ name: string; fn: CleanupAction }> = [];
  private running: Promise<void> | undefined;
  private backstopInstalled = false;
  private readonly backstop = () => {
    for (const { fn } of this.actions.splice(0).reverse()) {
      try {
        void Promise.resolve(fn()).catch(() => {});
      } catch {
        /* best effort */
      }
    }
  };

  constructor(private readonly options: CleanupOptions) {}

  /** Registers an action; returns a function that runs it now instead (once, and unregisters it). */
  add(name: string, fn: CleanupAction): () => Promise<void> {
    const entry = { name, fn };
    this.actions.push(entry);
    if (this.options.exitBackstop && !this.backstopInstalled) {
      process.once("exit", this.backstop);
      this.backstopInstalled = true;
    }
    return async () => {
      const i = this.actions.indexOf(entry);
      if (i < 0) return;
      this.actions.splice(i, 1);
      await fn();
    };
  }

  /** Runs every registered action, last added first. Concurrent calls share one run; actions
   * added later are run by the next call. */
  run(): Promise<void> {
    this.running ??= this.runAll().finally(() => {
      this.running = undefined;
      if (this.backstopInstalled && this.actions.length === 0) {
        process.removeListener("exit", this.backstop);
        this.backstopInstalled = false;
      }
    });
    return this.running;
  }

  private async runAll(): Promise<void> {
    const limit = this.options.stepTimeoutMs ?? 20_000;
    for (let next = this.actions.pop(); next; next = this.actions.pop()) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          next.fn(),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${limit / 1000} s`)), limit))),
        ]);
      } catch (err) {
        process.stderr.write(`[${this.options.name}] ${next.name}: cleanup failed: ${(err as Error)?.message ?? String(err)}\n`);
      } finally {
        clearTimeout(timer);
      }
    }
  }
}
