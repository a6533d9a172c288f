import { fromBinary, type DescMethod, type DescService } from "@bufbuild/protobuf";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { ImportAssignmentsRequestSchema } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { invalidArgument } from "../errors.js";
import { decodeImportRequest } from "./import-request-decoder.js";
import { responseEncoder } from "./response-encoding.js";

/** `/assignment.v1.AssignmentService/Assign` */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/**
 * Decodes a request, turning malformed bytes into INVALID_ARGUMENT (grpc-js would answer
 * INTERNAL if the deserializer itself threw).
 */
export function decodeRequest<M extends DescMethod>(method: M, bytes: Buffer) {
  try {
    // An import's rows: a decoder of their own (import-request-decoder.ts), the same messages.
    if (method.input.typeName === ImportAssignmentsRequestSchema.typeName) {
      return decodeImportRequest(bytes) as unknown as ReturnType<typeof fromBinary<M["input"]>>;
    }
    return fromBinary(method.input, bytes);
  } catch (err) {
    throw invalidArgument("request", `is not a valid ${method.input.typeName} message: ${(err as Error).message}`);
  }
}

/**
 * A grpc-js service definition built from a generated protobuf-es service descriptor, keyed by
 * each method's local name. On the server, requests stay raw bytes here and are decoded by the
 * handler wrapper (see decodeRequest); responses are encoded from their init shape.
 */
export function serverDefinition(service: DescService): ServiceDefinition {
  const def: Record<string, MethodDefinition<Buffer, object>> = {};
  for (const m of service.methods) {
    def[m.localName] = {
      path: methodPath(m),
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: responseEncoder(m.output),
      responseDeserialize: (b: Buffer) => fromBinary(m.output, b),
      originalName: m.name,
    };
  }
  return def as ServiceDefinition;
}
