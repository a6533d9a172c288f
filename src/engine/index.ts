export * from "./hash.js";
export * from "./buckets.js";
export * from "./rules.js";
export * from "./experiment-config.js";
export * from "./evaluate.js";
export * from "./sample-ratio.js";
