/**
 * Server reflection and health checking, through real gRPC clients built only from the standard
 * protos (the ones bundled with @grpc/reflection and grpc-health-check), as grpcurl or a load
 * balancer would: nothing of assignment.v1 is known to the client up front.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { create, createFileRegistry, fromBinary, toBinary, toJson, type DescMessage } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  MethodOptions_IdempotencyLevel,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AssignmentService,
  ExperimentService,
  ExperimentStatus,
  file_assignment_v1_assignment_service,
  file_assignment_v1_types,
} from "assignment-client";
import { healthFileDescriptor } from "../../src/grpc/health-descriptor.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const require = createRequire(import.meta.url);
const reflectionProtoDir = path.join(path.dirname(require.resolve("@grpc/reflection/package.json")), "build", "proto");
const loadOptions = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

type Ctor = grpc.ServiceClientConstructor;
function serviceClient(file: string, includeDirs: string[], ...name: string[]): Ctor {
  let node: unknown = grpc.loadPackageDefinition(protoLoader.loadSync(file, { ...loadOptions, includeDirs }));
  for (const part of name) node = (node as Record<string, unknown>)[part];
  return node as Ctor;
}

const ReflectionV1 = serviceClient(
  "grpc/reflection/v1/reflection.proto",
  [reflectionProtoDir],
  "grpc",
  "reflection",
  "v1",
  "ServerReflection",
);
const ReflectionV1Alpha = serviceClient(
  "grpc/reflection/v1alpha/reflection.proto",
  [reflectionProtoDir],
  "grpc",
  "reflection",
  "v1alpha",
  "ServerReflection",
);
const Health = serviceClient(healthProtoPath, [], "grpc", "health", "v1", "Health");

interface ReflectionResponse {
  message_response: "list_services_response" | "file_descriptor_response" | "error_response" | "all_extension_numbers_response";
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** Sends `requests` on one ServerReflectionInfo stream and collects the answers. */
async function reflect(Client: Ctor, address: string, requests: object[]): Promise<ReflectionResponse[]> {
  const client = new Client(address, grpc.credentials.createInsecure());
  try {
    const call = (
      client as unknown as { ServerReflectionInfo(o: grpc.CallOptions): grpc.ClientDuplexStream<object, ReflectionResponse> }
    ).ServerReflectionInfo({ deadline: Date.now() + 10_000 });
    const answers: ReflectionResponse[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on("data", (r: ReflectionResponse) => answers.push(r));
      call.on("error", reject);
      call.on("end", resolve);
    });
    for (const r of requests) call.write(r);
    call.end();
    await done;
    return answers;
  } finally {
    client.close();
  }
}

const decodeFiles = (r: ReflectionResponse): FileDescriptorProto[] =>
  (r.file_descriptor_response?.file_descriptor_proto ?? []).map((b) => fromBinary(FileDescriptorProtoSchema, b));

function healthCall<T>(address: string, method: "Check" | "List", request: object): Promise<T> {
  const client = new Health(address, grpc.credentials.createInsecure());
  return new Promise<T>((resolve, reject) =>
    (client as unknown as Record<string, (r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: T) => void) => void>)[
      method
    ](request, { deadline: Date.now() + 10_000 }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res);
    }),
  );
}

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

describe("server reflection", () => {
  for (const [version, Client] of [
    ["v1", ReflectionV1],
    ["v1alpha", ReflectionV1Alpha],
  ] as const) {
    it(`${version}: lists both services (and health)`, async () => {
      const [r] = await reflect(Client, t.server.address, [{ list_services: "*" }]);
      expect(r.message_response).toBe("list_services_response");
      const names = r.list_services_response!.service.map((s) => s.name);
      expect(names).toEqual(
        expect.arrayContaining(["assignment.v1.AssignmentService", "assignment.v1.ExperimentService", "grpc.health.v1.Health"]),
      );
    });
  }

  it("answers the file declaring AssignmentService, with its imports, equal to the generated descriptors", async () => {
    const [r] = await reflect(ReflectionV1, t.server.address, [{ file_containing_symbol: "assignment.v1.AssignmentService" }]);
    expect(r.message_response).toBe("file_descriptor_response");
    const files = decodeFiles(r);
    expect(files.map((f) => f.name)).toEqual(
      expect.arrayContaining([
        "assignment/v1/assignment_service.proto",
        "assignment/v1/types.proto",
        "google/protobuf/struct.proto",
        "google/protobuf/timestamp.proto",
      ]),
    );
    const main = files[0];
    expect(main.name).toBe("assignment/v1/assignment_service.proto");
    const service = main.service.find((s) => s.name === "AssignmentService")!;
    expect(service.method.map((m) => m.name)).toEqual([
      "Assign",
      "AssignUnit",
      "BulkAssign",
      "MatrixAssign",
      "StreamAssign",
      "ResolveParams",
      "BulkResolveParams",
    ]);
    expect(service.method.find((m) => m.name === "Assign")?.options?.idempotencyLevel).toBe(MethodOptions_IdempotencyLevel.IDEMPOTENT);
    const stream = service.method.find((m) => m.name === "StreamAssign")!;
    expect([stream.clientStreaming, stream.serverStreaming]).toEqual([true, true]);
    // The same schema the server was generated from, field for field.
    expect(toJson(FileDescriptorProtoSchema, main)).toEqual(toJson(FileDescriptorProtoSchema, file_assignment_v1_assignment_service.proto));
    const types = files.find((f) => f.name === "assignment/v1/types.proto")!;
    expect(toJson(FileDescriptorProtoSchema, types)).toEqual(toJson(FileDescriptorProtoSchema, file_assignment_v1_types.proto));
  });

  it("finds files by name and by message symbol; unknown symbols are NOT_FOUND", async () => {
    const [byName, bySymbol, missing] = await reflect(ReflectionV1, t.server.address, [
      { file_by_filename: "assignment/v1/experiment_service.proto" },
      { file_containing_symbol: "assignment.v1.Assignment" },
      { file_containing_symbol: "assignment.v1.Nope" },
    ]);
    const experimentFile = decodeFiles(byName)[0];
    expect(experimentFile.service[0].name).toBe("ExperimentService");
    expect(experimentFile.service[0].method.map((m) => m.name)).toEqual(ExperimentService.methods.map((m) => m.name));
    expect(decodeFiles(bySymbol)[0].name).toBe("assignment/v1/types.proto");
    expect(missing.message_response).toBe("error_response");
    expect(missing.error_response!.error_code).toBe(grpc.status.NOT_FOUND);
  });

  it("describes the health service too, as protoc describes grpc-health-check's health.proto", async () => {
    const [r] = await reflect(ReflectionV1, t.server.address, [{ file_containing_symbol: "grpc.health.v1.Health" }]);
    const [served] = decodeFiles(r);
    // Resolvable on its own: every type reference is fully qualified.
    const registry = createFileRegistry(served, () => undefined);
    expect(registry.getService("grpc.health.v1.Health")?.methods.map((m) => m.name)).toEqual(["Check", "Watch", "List"]);

    const dir = mkdtempSync(path.join(os.tmpdir(), "health-desc-"));
    try {
      const out = path.join(dir, "health.pb");
      execFileSync("protoc", [
        `-I${path.dirname(path.dirname(path.dirname(healthProtoPath)))}`,
        `--descriptor_set_out=${out}`,
        "health/v1/health.proto",
      ]);
      const [fromProtoc] = fromBinary(FileDescriptorSetSchema, readFileSync(out)).file;
      expect(toJson(FileDescriptorProtoSchema, served)).toEqual({
        ...(toJson(FileDescriptorProtoSchema, fromProtoc) as object),
        name: healthFileDescriptor.name,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("is enough to call the server without its protos (what grpcurl does)", async () => {
    await t.experiments.createExperiment({
      key: "reflected",
      variants: [
        { key: "a", weight: 5000 },
        { key: "b", weight: 5000 },
      ],
      status: ExperimentStatus.RUNNING,
    });
    const [r] = await reflect(ReflectionV1, t.server.address, [{ file_containing_symbol: "assignment.v1.AssignmentService" }]);
    const files = decodeFiles(r);
    const byName = new Map(files.map((f) => [f.name, f]));
    const registry = createFileRegistry(files[0], (name) => byName.get(name));
    const service = registry.getService("assignment.v1.AssignmentService")!;
    const assign = service.methods.find((m) => m.name === "Assign")!;
    const input: DescMessage = assign.input;
    const output: DescMessage = assign.output;
    const client = new grpc.Client(t.server.address, grpc.credentials.createInsecure());
    try {
      const response = await new Promise<unknown>((resolve, reject) =>
        client.makeUnaryRequest(
          `/${service.typeName}/${assign.name}`,
          (json: object) => Buffer.from(toBinary(input, create(input, json as never))),
          (bytes: Buffer) => toJson(output, fromBinary(output, bytes)),
          { experimentKey: "reflected", unitId: "u-1" },
          new grpc.Metadata(),
          { deadline: Date.now() + 10_000 },
          (err, res) => (err ? reject(err) : resolve(res)),
        ),
      );
      const typed = await t.assignments.assign({ experimentKey: "reflected", unitId: "u-1" });
      expect(response).toMatchObject({
        assignment: { experimentKey: "reflected", variantKey: typed.assignment!.variantKey, reason: "REASON_NEW" },
      });
    } finally {
      client.close();
    }
  });
});

describe("health", () => {
  it("is SERVING for the server and each service; unknown services are NOT_FOUND", async () => {
    for (const service of ["", AssignmentService.typeName, ExperimentService.typeName]) {
      expect(await healthCall<{ status: string }>(t.server.address, "Check", { service })).toEqual({ status: "SERVING" });
    }
    await expect(healthCall(t.server.address, "Check", { service: "nope.v1.Nope" })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it("turns NOT_SERVING on shutdown, seen by a watcher, whose stream then ends", async () => {
    const other = await startTestServer();
    const client = new Health(other.server.address, grpc.credentials.createInsecure());
    try {
      const watch = (client as unknown as { Watch(r: object): grpc.ClientReadableStream<{ status: string }> }).Watch({ service: "" });
      const seen: string[] = [];
      const ended = new Promise<grpc.StatusObject>((resolve) => watch.on("status", resolve));
      watch.on("data", (r: { status: string }) => seen.push(r.status));
      watch.on("error", () => {});
      await expect.poll(() => seen).toEqual(["SERVING"]);
      await other.stop();
      const status = await ended;
      expect(seen).toEqual(["SERVING", "NOT_SERVING"]);
      expect(status.code).toBe(grpc.status.OK);
    } finally {
      client.close();
    }
  });
});
