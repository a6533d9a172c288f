/**
 * The standard gRPC services every server offers besides its own, so tools and load balancers
 * need no proto files:
 *
 * - Server reflection (grpc.reflection.v1 and v1alpha ServerReflection, from @grpc/reflection),
 *   fed with the FileDescriptorProtos embedded in our generated protobuf-es code: the very
 *   schema the server was built from, with no .proto file read at run time.
 * - Health checking (grpc.health.v1.Health, from grpc-health-check): SERVING for "" and for each
 *   service once the server listens, NOT_SERVING when it shuts down.
 */
import { toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import { healthFileDescriptor } from "./health-descriptor.js";

/** `file` and everything it imports, transitively, each once, imports first. */
export function withDependencies(files: readonly DescFile[]): DescFile[] {
  const out: DescFile[] = [];
  const seen = new Set<string>();
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    f.dependencies.forEach(visit);
    out.push(f);
  };
  files.forEach(visit);
  return out;
}

/** Serialized FileDescriptorProtos of the files declaring `services` and of all their imports
 * (google/protobuf/struct.proto and timestamp.proto included). */
export function fileDescriptorProtos(services: readonly DescService[]): Map<string, Uint8Array> {
  return new Map(withDependencies(services.map((s) => s.file)).map((f) => [f.proto.name, toBinary(FileDescriptorProtoSchema, f.proto)]));
}

/**
 * @grpc/reflection indexes every FileDescriptorProto found under `fileDescriptorProtos` of the
 * entries of a proto-loader package definition; this is such a definition, one entry per file.
 */
function reflectionPackage(files: Map<string, Uint8Array>) {
  const pkg: Record<string, { format: string; type: object; fileDescriptorProtos: Buffer[] }> = {};
  for (const [name, bytes] of files) {
    pkg[name] = { format: "Protocol Buffer 3 FileDescriptorProto", type: {}, fileDescriptorProtos: [Buffer.from(bytes)] };
  }
  return pkg as unknown as ConstructorParameters<typeof ReflectionService>[0];
}

export interface StandardServices {
  /** Reports SERVING for "" and every service (call once the server listens). */
  serving(): void;
  /** Reports NOT_SERVING for all, then ends open Watch streams so a graceful shutdown is not
   * held up by them. */
  shutdown(): void;
}

/** Adds reflection and health to `server` for `services`. */
export function addStandardServices(server: Pick<grpc.Server, "addService">, services: readonly DescService[]): StandardServices {
  const files = fileDescriptorProtos(services);
  files.set(healthFileDescriptor.name, toBinary(FileDescriptorProtoSchema, healthFileDescriptor));
  new ReflectionService(reflectionPackage(files)).addToServer(server);

  const names = ["", ...services.map((s) => s.typeName)];
  const impl = new HealthImplementation(Object.fromEntries(names.map((n) => [n, "NOT_SERVING" as ServingStatus])));
  const watches = new Set<{ end(): void; on(e: "cancelled" | "finish", f: () => void): unknown }>();
  impl.addToServer({
    addService(definition, implementation) {
      const watch = implementation.watch as (call: Parameters<typeof track>[0]) => void;
      const track = (call: { end(): void; on(e: "cancelled" | "finish", f: () => void): unknown }) => {
        watches.add(call);
        call.on("cancelled", () => watches.delete(call));
        call.on("finish", () => watches.delete(call));
        watch(call);
      };
      server.addService(definition as grpc.ServiceDefinition, { ...implementation, watch: track } as grpc.UntypedServiceImplementation);
    },
  });

  const setAll = (status: ServingStatus) => names.forEach((n) => impl.setStatus(n, status));
  return {
    serving: () => setAll("SERVING"),
    shutdown() {
      setAll("NOT_SERVING");
      for (const call of watches) call.end();
      watches.clear();
    },
  };
}
