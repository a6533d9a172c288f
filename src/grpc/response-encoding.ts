import { create, type DescField, type DescMessage, toBinary } from "@bufbuild/protobuf";

/**
 * Encodings of frozen messages, made once. A handler freezes (Object.freeze) a message init it
 * hands out again and again (a warm page load answers the same few Assignments), and its bytes
 * are reused for as long as the object lives.
 */
const encodings = new WeakMap<object, Uint8Array>();

function encodeOnce(schema: DescMessage, init: object): Uint8Array {
  if (!Object.isFrozen(init)) return toBinary(schema, create(schema, init as never));
  let bytes = encodings.get(init);
  if (!bytes) {
    bytes = toBinary(schema, create(schema, init as never));
    encodings.set(init, bytes);
  }
  return bytes;
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n >>>= 7;
    len++;
  }
  return len;
}

function writeVarint(out: Uint8Array, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[at++] = n;
  return at;
}

/** The one field of a message made of a single repeated message field (AssignUnitResponse's
 * `assignments`), whose elements can be encoded one by one; undefined for any other shape. */
function soleRepeatedMessageField(schema: DescMessage): (DescField & { fieldKind: "list"; listKind: "message" }) | undefined {
  if (schema.fields.length !== 1) return undefined;
  const f = schema.fields[0]!;
  return f.fieldKind === "list" && f.listKind === "message" ? f : undefined;
}

/**
 * The binary encoding of a response given as its init shape: protobuf-es's own, except that a
 * message made of one repeated message field is written element by element, reusing the
 * encodings of frozen elements (the bytes are the same: protobuf-es writes each element as its
 * tag, its length and its encoding, in order).
 */
export function responseEncoder(schema: DescMessage): (init: object) => Buffer {
  const list = soleRepeatedMessageField(schema);
  if (!list) {
    return (init) => {
      const bytes = toBinary(schema, create(schema, init as never));
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    };
  }
  const tag = (list.number << 3) | 2; // wire type 2: length-delimited
  const tagLength = varintLength(tag);
  const name = list.localName;
  return (init) => {
    const elements = (init as Record<string, unknown>)[name] as readonly object[] | undefined;
    if (!elements || elements.length === 0) return Buffer.alloc(0);
    const parts = elements.map((e) => encodeOnce(list.message, e));
    let size = 0;
    for (const p of parts) size += tagLength + varintLength(p.length) + p.length;
    const out = Buffer.allocUnsafe(size);
    let at = 0;
    for (const p of parts) {
      at = writeVarint(out, at, tag);
      at = writeVarint(out, at, p.length);
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
}
