declare module "murmurhash3js-revisited" {
  interface MurmurHash3 {
    /** Skip the per-byte check of the input (callers here always pass a Uint8Array). */
    inputValidation: boolean;
    x86: { hash32(bytes: ArrayLike<number>, seed?: number): number };
  }
  const murmurHash3: MurmurHash3;
  export default murmurHash3;
}
