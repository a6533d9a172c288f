/**
 * PostgreSQL's hash partitioning of a text key, computed here: which partition of a table
 * `PARTITION BY HASH (unit_id)` holds a unit, so that a statement can name that partition instead
 * of the partitioned table (src/store/assignment-store.ts). Checked against the database over many
 * ids (test/store/partition-hash.test.ts).
 *
 * What PostgreSQL (11 to 17) does for one text column in a deterministic collation (C, POSIX, or any
 * libc/ICU collation made deterministic; src/backend/partitioning/partbounds.c,
 * compute_partition_hash_value; src/backend/utils/adt/varlena.c, hashtextextended):
 *   hash    = hash_bytes_extended(the text's bytes, HASH_PARTITION_SEED)  (Jenkins' lookup3, src/common/hashfn.c)
 *   rowHash = hash_combine64(0, hash) = hash + 0x49a0f4dd15e5a8e3 (mod 2^64)
 * and the row belongs to the partition whose (modulus, remainder) has rowHash % modulus = remainder.
 * The bytes are those of the server encoding: UTF-8 here (the caller checks server_encoding), which
 * is how the driver sends a JavaScript string (a lone surrogate becomes U+FFFD, as TextEncoder does).
 * A non-deterministic collation hashes a sort key instead: not computed here.
 */

/** HASH_PARTITION_SEED (src/include/catalog/partition.h), high and low 32 bits. */
const SEED_HIGH = 0x7a5b2236;
const SEED_LOW = 0x7996dcfd;
/** hash_combine64's constant, added to the one column's hash (rowHash starts at 0). */
const COMBINE = 0x49a0f4dd15e5a8e3n;
const MASK64 = (1n << 64n) - 1n;

const encoder = new TextEncoder();

/** hash_bytes_extended(k, k.length, seed) for a non-zero seed given as two 32-bit halves: the 64-bit
 * result as BigInt (b << 32 | c). 32-bit unsigned arithmetic throughout (int32 in JavaScript, read
 * back unsigned at the end); words are read little-endian, as on the machines PostgreSQL runs on
 * (x86-64, arm64): a big-endian server hashes otherwise. */
export function hashBytesExtended(k: Uint8Array, seedHigh: number, seedLow: number): bigint {
  const s = new Int32Array(3); // a, b, c (read back unsigned at the end)
  let len = k.length;
  s.fill(0x9e3779b9 + len + 3923095);
  if (seedHigh !== 0 || seedLow !== 0) {
    // The seed is hashed as a 12-byte block of its own.
    s[0]! += seedHigh;
    s[1]! += seedLow;
    mix(s);
  }
  let i = 0;
  while (len >= 12) {
    s[0]! += word(k, i);
    s[1]! += word(k, i + 4);
    s[2]! += word(k, i + 8);
    mix(s);
    i += 12;
    len -= 12;
  }
  // The last 0 to 11 bytes (the lowest byte of c is left for the length, as in lookup3).
  if (len >= 11) s[2]! += k[i + 10]! << 24;
  if (len >= 10) s[2]! += k[i + 9]! << 16;
  if (len >= 9) s[2]! += k[i + 8]! << 8;
  if (len >= 8) s[1]! += k[i + 7]! << 24;
  if (len >= 7) s[1]! += k[i + 6]! << 16;
  if (len >= 6) s[1]! += k[i + 5]! << 8;
  if (len >= 5) s[1]! += k[i + 4]!;
  if (len >= 4) s[0]! += k[i + 3]! << 24;
  if (len >= 3) s[0]! += k[i + 2]! << 16;
  if (len >= 2) s[0]! += k[i + 1]! << 8;
  if (len >= 1) s[0]! += k[i]!;
  final(s);
  return (BigInt(s[1]! >>> 0) << 32n) | BigInt(s[2]! >>> 0);
}

/** lookup3's mix(a, b, c); an Int32Array wraps every result to 32 bits. */
function mix(s: Int32Array): void {
  s[0]! -= s[2]!;
  s[0]! ^= rot(s[2]!, 4);
  s[2]! += s[1]!;
  s[1]! -= s[0]!;
  s[1]! ^= rot(s[0]!, 6);
  s[0]! += s[2]!;
  s[2]! -= s[1]!;
  s[2]! ^= rot(s[1]!, 8);
  s[1]! += s[0]!;
  s[0]! -= s[2]!;
  s[0]! ^= rot(s[2]!, 16);
  s[2]! += s[1]!;
  s[1]! -= s[0]!;
  s[1]! ^= rot(s[0]!, 19);
  s[0]! += s[2]!;
  s[2]! -= s[1]!;
  s[2]! ^= rot(s[1]!, 4);
  s[1]! += s[0]!;
}

/** lookup3's final(a, b, c). */
function final(s: Int32Array): void {
  s[2]! ^= s[1]!;
  s[2]! -= rot(s[1]!, 14);
  s[0]! ^= s[2]!;
  s[0]! -= rot(s[2]!, 11);
  s[1]! ^= s[0]!;
  s[1]! -= rot(s[0]!, 25);
  s[2]! ^= s[1]!;
  s[2]! -= rot(s[1]!, 16);
  s[0]! ^= s[2]!;
  s[0]! -= rot(s[2]!, 4);
  s[1]! ^= s[0]!;
  s[1]! -= rot(s[0]!, 14);
  s[2]! ^= s[1]!;
  s[2]! -= rot(s[1]!, 24);
}

function rot(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function word(k: Uint8Array, i: number): number {
  return k[i]! | (k[i + 1]! << 8) | (k[i + 2]! << 16) | (k[i + 3]! << 24);
}

/** hashtextextended(text, HASH_PARTITION_SEED) in a deterministic collation, as an unsigned 64-bit
 * value (SQL shows it as a signed bigint). */
export function partitionKeyHash(unitId: string): bigint {
  return hashBytesExtended(encoder.encode(unitId), SEED_HIGH, SEED_LOW);
}

/** compute_partition_hash_value for one text column: the value whose remainders choose the
 * partition. */
export function rowHash(unitId: string): bigint {
  return (partitionKeyHash(unitId) + COMBINE) & MASK64;
}

/** The remainder of the unit's rowHash by `modulus` (a hash partition's FOR VALUES WITH
 * (MODULUS m, REMAINDER r) holds the units where this is r). */
export function hashRemainder(unitId: string, modulus: number): number {
  return Number(rowHash(unitId) % BigInt(modulus));
}
