/**
 * CSV as RFC 4180 has it: fields separated by commas, quoted with double quotes when they hold a
 * comma, a quote, a carriage return or a newline (quotes doubled inside). Unit ids may hold any of
 * these, so a quoted field may span lines; the reader handles that.
 */
import type { Readable } from "node:stream";

const NEEDS_QUOTES = /[",\r\n]|^\s|\s$/;

export function csvField(value: string): string {
  return NEEDS_QUOTES.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

export function csvLine(fields: readonly string[]): string {
  let s = "";
  for (let i = 0; i < fields.length; i++) s += (i > 0 ? "," : "") + csvField(fields[i]);
  return s + "\n";
}

/** The records of a CSV stream, each an array of fields; an empty line is no record. */
export async function* readCsv(input: Readable): AsyncGenerator<string[]> {
  let field = "";
  let record: string[] = [];
  let quoted = false; // inside a quoted field
  let afterQuote = false; // just read a quote inside a quoted field (end, or first of a doubled one)
  let fieldStarted = false;
  input.setEncoding("utf8");
  for await (const chunk of input as AsyncIterable<string>) {
    const out: string[][] = [];
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (quoted) {
        if (afterQuote) {
          afterQuote = false;
          if (c === '"') {
            field += '"';
            continue;
          }
          quoted = false; // the quote closed the field; c is handled below
        } else if (c === '"') {
          afterQuote = true;
          continue;
        } else {
          field += c;
          continue;
        }
      }
      if (c === '"' && !fieldStarted) {
        quoted = true;
        fieldStarted = true;
      } else if (c === ",") {
        record.push(field);
        field = "";
        fieldStarted = false;
      } else if (c === "\n") {
        record.push(field.endsWith("\r") && !quoted ? field.slice(0, -1) : field);
        if (!(record.length === 1 && record[0] === "")) out.push(record);
        record = [];
        field = "";
        fieldStarted = false;
      } else {
        field += c;
        fieldStarted = true;
      }
    }
    for (const r of out) yield r;
  }
  if (quoted && !afterQuote) throw new Error("CSV input ends inside a quoted field");
  if (fieldStarted || record.length > 0 || field !== "") {
    record.push(field.endsWith("\r") ? field.slice(0, -1) : field);
    if (!(record.length === 1 && record[0] === "")) yield record;
  }
}

/** Lines of a stream (`\n` or `\r\n`), without their end; empty lines are skipped. */
export async function* readLines(input: Readable): AsyncGenerator<string> {
  let rest = "";
  input.setEncoding("utf8");
  for await (const chunk of input as AsyncIterable<string>) {
    const text = rest + chunk;
    let start = 0;
    for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
      const line = text.charCodeAt(nl - 1) === 13 ? text.slice(start, nl - 1) : text.slice(start, nl);
      start = nl + 1;
      if (line !== "") yield line;
    }
    rest = text.slice(start);
  }
  const last = rest.endsWith("\r") ? rest.slice(0, -1) : rest;
  if (last !== "") yield last;
}
