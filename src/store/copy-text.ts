/** PostgreSQL's COPY text format: columns separated by tabs, rows by newlines, and those (with
 * backslash and carriage return) escaped with a backslash inside values. */

const NEEDS_ESCAPE = /[\\\t\n\r]/;
const ESCAPED = /[\\\t\n\r]/g;
const ESCAPE: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };

/** A value as COPY text. */
export function escapeCopyText(s: string): string {
  return NEEDS_ESCAPE.test(s) ? s.replace(ESCAPED, (c) => ESCAPE[c]!) : s;
}

const UNESCAPE: Record<string, string> = { "\\": "\\", n: "\n", r: "\r", t: "\t", b: "\b", f: "\f", v: "\v" };

/** Undoes the backslash escapes PostgreSQL writes. */
export function unescapeCopyText(s: string): string {
  return s.includes("\\") ? s.replace(/\\(.)/g, (_, c: string) => UNESCAPE[c] ?? c) : s;
}
