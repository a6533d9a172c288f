export {
  createClient,
  isRetryable,
  DEFAULT_RETRY,
  type Client,
  type ClientOptions,
  type CallOptions,
  type RetryOptions,
  type RetryEvent,
} from "./create-client.js";
export * from "../../gen/ts/assignment/v1/assignment_service_pb.js";
export * from "../../gen/ts/assignment/v1/experiment_service_pb.js";
export * from "../../gen/ts/assignment/v1/types_pb.js";
export * from "./columns.js";
