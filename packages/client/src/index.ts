/**
 * The TypeScript client of the assignment.v1 API: typed clients derived from the generated
 * descriptors (which this package carries), retries of the idempotent methods by grpc-js's own
 * retryPolicy, column decoding, the cohort stream helper and the protocol's limits.
 */
export { createClient, methodPath, type Client, type ClientOptions, type CallOptions } from "./create-client.js";
export { DEFAULT_RETRY, isRetryable, retryChannelOptions, retryPolicy, retryServiceConfig, type RetryOptions } from "./retry.js";
export * from "./gen/assignment/v1/assignment_service_pb.js";
export * from "./gen/assignment/v1/cohort_service_pb.js";
export * from "./gen/assignment/v1/experiment_service_pb.js";
export * from "./gen/assignment/v1/job_service_pb.js";
export * from "./gen/assignment/v1/types_pb.js";
export * from "./columns.js";
export * from "./cohort.js";
export * from "./params.js";
export * as limits from "./limits.js";
