/**
 * TLS: the server speaks TLS with TLS_CERT_FILE / TLS_KEY_FILE; the client and the CLI connect
 * trusting the certificate. The fixture is a self-signed certificate for localhost and 127.0.0.1
 * valid for 100 years, made with:
 *   openssl req -x509 -newkey rsa:2048 -nodes -keyout localhost.key -out localhost.crt -days 36500 \
 *     -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, ExperimentService } from "assignment-client";
import { failure } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { cliOk } from "../cli/run-cli.js";

const certFile = fileURLToPath(new URL("./fixtures/localhost.crt", import.meta.url));
const keyFile = fileURLToPath(new URL("./fixtures/localhost.key", import.meta.url));

describe("TLS", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ tls: { certFile, keyFile } });
  });
  afterAll(async () => t?.stop());

  it("serves TLS to a client trusting the certificate, and nothing to a plaintext one", async () => {
    const secure = createClient(ExperimentService, `localhost:${t.server.port}`, {
      timeoutMs: 10_000,
      credentials: grpc.credentials.createSsl(readFileSync(certFile)),
    });
    const plain = createClient(ExperimentService, t.server.address, { timeoutMs: 3_000, retry: false });
    try {
      await secure.createExperiment({ key: "tls", variants: [{ key: "a", weight: 10_000 }] });
      expect((await secure.listExperiments({})).experiments.map((e) => e.key)).toEqual(["tls"]);
      const f = await failure(plain.listExperiments({}));
      expect(f.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      secure.close();
      plain.close();
    }
    expect(await cliOk(`localhost:${t.server.port}`, ["--ca-file", certFile, "experiments", "list"])).toMatch(/^tls\s+DRAFT/m);
  });
});
