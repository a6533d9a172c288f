/**
 * Which hash partition of assignments holds a unit, computed in the server, fast enough to run on
 * every row of an import (about 0.1 µs a row for a power-of-two modulus, 0.3 otherwise: no BigInt, no allocation for ASCII ids), so that an
 * import can COPY each partition's rows into that partition (copy-import.ts) and a page load can
 * name the unit's partition (partition-layout.ts, assignment-store.ts). Checked against the
 * database (test/store/partition-remainder.test.ts); the database checks it again on every row it
 * stores in a partition (the partition constraint), and the import falls back to the partitioned
 * table if it ever disagrees.
 *
 * What PostgreSQL (11 to 17) does for one text column in a deterministic collation
 * (src/backend/partitioning/partbounds.c compute_partition_hash_value, varlena.c hashtextextended):
 *   hash    = hash_bytes_extended(the UTF-8 bytes, HASH_PARTITION_SEED)   (Jenkins' lookup3)
 *   rowHash = hash_combine64(0, hash) = hash + 0x49a0f4dd15e5a8e3 (mod 2^64)
 * and the row belongs to the partition with (MODULUS m, REMAINDER rowHash % m). Words are read
 * little-endian, as on the machines PostgreSQL runs on (x86-64, arm64).
 */

/** Room for the UTF-8 bytes of an ASCII unit id; longer or other ids are encoded apart. */
const ascii = new Uint8Array(1024);
const encoder = new TextEncoder();
const TWO32 = 0x1_0000_0000;

/** rowHash(unitId) % modulus, as PostgreSQL computes it for a hash partition of a text key. */
export function hashPartitionRemainder(unitId: string, modulus: number): number {
  let k = ascii;
  let len = unitId.length;
  let isAscii = len <= ascii.length;
  for (let i = 0; isAscii && i < len; i++) {
    const ch = unitId.charCodeAt(i);
    if (ch > 0x7f) isAscii = false;
    else k[i] = ch;
  }
  if (!isAscii) {
    k = encoder.encode(unitId); // a lone surrogate becomes U+FFFD, as the driver sends it
    len = k.length;
  }
  // hash_bytes_extended with a non-zero seed: HASH_PARTITION_SEED = 0x7a5b22367996dcfd.
  let a = (0x9e3779b9 + len + 3923095) | 0;
  let b = a;
  let c = a;
  a = (a + 0x7a5b2236) | 0;
  b = (b + 0x7996dcfd) | 0;
  // mix(a, b, c)
  a = (a - c) | 0;
  a ^= (c << 4) | (c >>> 28);
  c = (c + b) | 0;
  b = (b - a) | 0;
  b ^= (a << 6) | (a >>> 26);
  a = (a + c) | 0;
  c = (c - b) | 0;
  c ^= (b << 8) | (b >>> 24);
  b = (b + a) | 0;
  a = (a - c) | 0;
  a ^= (c << 16) | (c >>> 16);
  c = (c + b) | 0;
  b = (b - a) | 0;
  b ^= (a << 19) | (a >>> 13);
  a = (a + c) | 0;
  c = (c - b) | 0;
  c ^= (b << 4) | (b >>> 28);
  b = (b + a) | 0;
  let i = 0;
  while (len >= 12) {
    a = (a + (k[i]! | (k[i + 1]! << 8) | (k[i + 2]! << 16) | (k[i + 3]! << 24))) | 0;
    b = (b + (k[i + 4]! | (k[i + 5]! << 8) | (k[i + 6]! << 16) | (k[i + 7]! << 24))) | 0;
    c = (c + (k[i + 8]! | (k[i + 9]! << 8) | (k[i + 10]! << 16) | (k[i + 11]! << 24))) | 0;
    a = (a - c) | 0;
    a ^= (c << 4) | (c >>> 28);
    c = (c + b) | 0;
    b = (b - a) | 0;
    b ^= (a << 6) | (a >>> 26);
    a = (a + c) | 0;
    c = (c - b) | 0;
    c ^= (b << 8) | (b >>> 24);
    b = (b + a) | 0;
    a = (a - c) | 0;
    a ^= (c << 16) | (c >>> 16);
    c = (c + b) | 0;
    b = (b - a) | 0;
    b ^= (a << 19) | (a >>> 13);
    a = (a + c) | 0;
    c = (c - b) | 0;
    c ^= (b << 4) | (b >>> 28);
    b = (b + a) | 0;
    i += 12;
    len -= 12;
  }
  // The last 0 to 11 bytes (c's lowest byte is left for the length, as in lookup3).
  if (len >= 11) c = (c + (k[i + 10]! << 24)) | 0;
  if (len >= 10) c = (c + (k[i + 9]! << 16)) | 0;
  if (len >= 9) c = (c + (k[i + 8]! << 8)) | 0;
  if (len >= 8) b = (b + (k[i + 7]! << 24)) | 0;
  if (len >= 7) b = (b + (k[i + 6]! << 16)) | 0;
  if (len >= 6) b = (b + (k[i + 5]! << 8)) | 0;
  if (len >= 5) b = (b + k[i + 4]!) | 0;
  if (len >= 4) a = (a + (k[i + 3]! << 24)) | 0;
  if (len >= 3) a = (a + (k[i + 2]! << 16)) | 0;
  if (len >= 2) a = (a + (k[i + 1]! << 8)) | 0;
  if (len >= 1) a = (a + k[i]!) | 0;
  // final(a, b, c)
  c ^= b;
  c = (c - ((b << 14) | (b >>> 18))) | 0;
  a ^= c;
  a = (a - ((c << 11) | (c >>> 21))) | 0;
  b ^= a;
  b = (b - ((a << 25) | (a >>> 7))) | 0;
  c ^= b;
  c = (c - ((b << 16) | (b >>> 16))) | 0;
  a ^= c;
  a = (a - ((c << 4) | (c >>> 28))) | 0;
  b ^= a;
  b = (b - ((a << 14) | (a >>> 18))) | 0;
  c ^= b;
  c = (c - ((b << 24) | (b >>> 8))) | 0;
  // The hash is b:c (high:low); rowHash adds hash_combine64's constant, mod 2^64, in two halves.
  // A power-of-two modulus (the default 16 partitions) takes the low bits of the low half alone:
  // integer operations, where the general case below needs five floating-point remainders (most
  // of this function's time).
  if ((modulus & (modulus - 1)) === 0 && modulus <= 0x4000_0000) return ((c + 0x15e5a8e3) & (modulus - 1)) >>> 0;
  const low = (c >>> 0) + 0x15e5a8e3;
  const high = ((b >>> 0) + 0x49a0f4dd + (low >= TWO32 ? 1 : 0)) % TWO32;
  // (high * 2^32 + low) % m, every product below 2^53.
  return ((((high % modulus) * (TWO32 % modulus)) % modulus) + ((low % TWO32) % modulus)) % modulus;
}
