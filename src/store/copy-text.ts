/** PostgreSQL's COPY text format: columns separated by tabs, rows by newlines, and those (with
 * backslash and carriage return) escaped with a backslash inside values. */

const NEEDS_ESCAPE = /[\\\t\n\r]/;
const ESCAPED = /[\\\t\n\r]/g;
const ESCAPE: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };

/** A value as COPY text. */
export function escapeCopyText(s: string): string {
  return NEEDS_ESCAPE.test(s) ? s.replace(ESCAPED, (c) => ESCAPE[c]!) : s;
}

/** The character a backslash escape PostgreSQL writes stands for, by the (UTF-16) code of the
 * character after the backslash: \b \f \n \r \t \v, and any other character for itself. */
function unescapedCode(c: number): number {
  switch (c) {
    case 0x62: // b
      return 0x08;
    case 0x66: // f
      return 0x0c;
    case 0x6e: // n
      return 0x0a;
    case 0x72: // r
      return 0x0d;
    case 0x74: // t
      return 0x09;
    case 0x76: // v
      return 0x0b;
    default:
      return c;
  }
}

/** Undoes the backslash escapes PostgreSQL writes. */
export function unescapeCopyText(s: string): string {
  return s.includes("\\") ? s.replace(/\\(.)/g, (_, c: string) => String.fromCharCode(unescapedCode(c.charCodeAt(0)))) : s;
}
