import cliProgress from "cli-progress";

export interface ProgressOptions {
  /** What is counted, e.g. "units". */
  unit: string;
  /** Known total (ETA shown), or undefined (count and rate only). */
  total?: number;
  /** Draw the bar; default: when stderr is a terminal. */
  enabled?: boolean;
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

/**
 * A progress bar on stderr (cli-progress) with count, rate and, when the total is known, ETA.
 * Drawn only on a terminal (on a pipe or file nothing but the closing summary is written).
 */
export class Progress {
  private readonly bar: cliProgress.SingleBar | undefined;
  private readonly started = performance.now();
  private value = 0;
  private noteText = "";

  constructor(private readonly options: ProgressOptions) {
    const enabled = options.enabled ?? process.stderr.isTTY === true;
    if (!enabled) return;
    const known = options.total !== undefined;
    this.bar = new cliProgress.SingleBar(
      {
        format: known
          ? `{bar} {percentage}% | {done}/{all} ${options.unit} | {rate} ${options.unit}/s | ETA {eta_formatted}{note}`
          : `{done} ${options.unit} | {rate} ${options.unit}/s | {duration_formatted}{note}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(options.total ?? 0, 0, this.payload());
  }

  private payload() {
    const seconds = (performance.now() - this.started) / 1000;
    return {
      done: fmt(this.value),
      all: fmt(this.options.total ?? 0),
      rate: seconds > 0 ? fmt(this.value / seconds) : "-",
      note: this.noteText ? ` | ${this.noteText}` : "",
    };
  }

  /** Shows what happens now at the end of the bar (e.g. "committing…" once everything is sent
   * and the server is still at work). */
  note(text: string): void {
    this.noteText = text;
    this.bar?.update(this.value, this.payload());
  }

  add(n: number): void {
    this.value += n;
    this.bar?.update(this.value, this.payload());
  }

  get count(): number {
    return this.value;
  }

  get seconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  /** Removes the bar; with `summary`, writes a closing line (count, time, rate) to stderr. */
  stop(summary?: string): void {
    if (this.bar) {
      this.bar.update(this.value, this.payload());
      this.bar.stop();
    }
    if (summary !== undefined) {
      const s = this.seconds;
      process.stderr.write(
        `${summary}: ${fmt(this.value)} ${this.options.unit} in ${s.toFixed(1)} s (${fmt(s > 0 ? this.value / s : 0)} ${this.options.unit}/s)\n`,
      );
    }
  }
}
