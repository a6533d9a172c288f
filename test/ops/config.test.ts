/** loadConfig: environment and flags, defaults, and the refusal to run an open ExperimentService. */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, SETTINGS } from "../../src/config.js";
import { readFileSync } from "node:fs";

const load = (env: Record<string, string>, argv: string[] = []) => loadConfig(argv, env);

describe("loadConfig", () => {
  it("with nothing set: embedded PGlite in ./data/pglite, in-process cache, insecure development mode, metrics on 9464", () => {
    const c = load({});
    expect(c.server).toMatchObject({
      databaseUrl: undefined,
      pgliteDataDir: "./data/pglite",
      redisUrl: undefined,
      host: "127.0.0.1",
      port: 50051,
      insecure: true,
      adminToken: undefined,
      metricsPort: 9464,
      metricsHost: "127.0.0.1",
      tls: undefined,
    });
    expect(c.logLevel).toBe("info");
  });

  it("refuses a real database without ADMIN_TOKEN unless INSECURE_DEV_MODE=1 or --insecure", () => {
    expect(() => load({ DATABASE_URL: "postgres://db/x" })).toThrow(ConfigError);
    expect(() => load({ DATABASE_URL: "postgres://db/x" })).toThrow(/refusing to start.*ADMIN_TOKEN.*INSECURE_DEV_MODE=1/);
    expect(load({ DATABASE_URL: "postgres://db/x", INSECURE_DEV_MODE: "1" }).server.insecure).toBe(true);
    expect(load({ DATABASE_URL: "postgres://db/x" }, ["--insecure"]).server.insecure).toBe(true);
    const secured = load({ DATABASE_URL: "postgres://db/x", ADMIN_TOKEN: "s3cret", ASSIGN_TOKEN: "other" });
    expect(secured.server).toMatchObject({ insecure: false, adminToken: "s3cret", assignToken: "other" });
    // The embedded database with a token is not insecure either.
    expect(load({ ADMIN_TOKEN: "s3cret" }).server.insecure).toBe(false);
    expect(() => load({ INSECURE_DEV_MODE: "maybe" })).toThrow(/INSECURE_DEV_MODE \(--insecure\): must be 1 or 0/);
  });

  it("reads every setting from the environment, and a flag wins over its variable", () => {
    const env = {
      DATABASE_URL: "postgres://u@h/db",
      REDIS_URL: "redis://r:6379",
      ADMIN_TOKEN: "a",
      HOST: "0.0.0.0",
      PORT: "6000",
      METRICS_PORT: "0",
      REDIS_PREFIX: "p:",
      CACHE_TTL_SECONDS: "60",
      MEMORY_CACHE_ENTRIES: "0",
      DATABASE_POOL_SIZE: "5",
      TRANSFER_POOL_SIZE: "2",
      IMPORT_IDLE_MS: "5000",
      INSERT_CONCURRENCY: "8",
      INSERT_MAX_WAIT_MS: "0",
      SHUTDOWN_GRACE_MS: "2500",
      LOG_LEVEL: "debug",
      PGLITE_DATA_DIR: "/var/lib/x",
    };
    const c = load(env);
    expect(c.server).toMatchObject({
      databaseUrl: "postgres://u@h/db",
      redisUrl: "redis://r:6379",
      host: "0.0.0.0",
      port: 6000,
      metricsPort: undefined,
      redisPrefix: "p:",
      cacheTtlSeconds: 60,
      memoryCacheEntries: 0,
      databasePoolSize: 5,
      transferPoolSize: 2,
      importIdleMs: 5000,
      insertConcurrency: 8,
      insertMaxWaitMs: 0,
      shutdownGraceMs: 2500,
      pgliteDataDir: "/var/lib/x",
    });
    expect(c.logLevel).toBe("debug");
    const f = load(env, ["--port", "7000", "--metrics-port", "9999", "--log-level", "warn", "--database-url", "postgres://other/db"]);
    expect(f.server).toMatchObject({ port: 7000, metricsPort: 9999, databaseUrl: "postgres://other/db" });
    expect(f.logLevel).toBe("warn");
    // Unset numbers are left to startServer's own defaults.
    expect(load({}).server).toMatchObject({
      cacheTtlSeconds: undefined,
      memoryCacheEntries: undefined,
      databasePoolSize: undefined,
      transferPoolSize: undefined,
      importIdleMs: undefined,
      shutdownGraceMs: undefined,
    });
    expect(() => load({ SHUTDOWN_GRACE_MS: "-1" })).toThrow(/SHUTDOWN_GRACE_MS \(--shutdown-grace\): must be an integer 0\.\.3600000/);
    expect(() => load({ TRANSFER_POOL_SIZE: "0" })).toThrow(/TRANSFER_POOL_SIZE \(--transfer-pool-size\): must be an integer 1\.\.1000/);
    expect(() => load({ IMPORT_IDLE_MS: "10" })).toThrow(/IMPORT_IDLE_MS \(--import-idle\): must be an integer 1000\.\.3600000/);
    expect(() => load({ INSERT_CONCURRENCY: "0" })).toThrow(/INSERT_CONCURRENCY \(--insert-concurrency\): must be an integer 1\.\.64/);
    expect(() => load({ INSERT_MAX_WAIT_MS: "1001" })).toThrow(/INSERT_MAX_WAIT_MS \(--insert-max-wait\): must be an integer 0\.\.1000/);
  });

  it("names the setting at fault", () => {
    expect(() => load({ PORT: "http" })).toThrow(/PORT \(--port\): must be an integer 0\.\.65535 \(got "http"\)/);
    expect(() => load({}, ["--port", "70000"])).toThrow(/PORT \(--port\)/);
    expect(() => load({ TLS_CERT_FILE: "/x.pem" })).toThrow(/give both for TLS, or neither/);
    expect(() => load({ TLS_CERT_FILE: "/nope.pem", TLS_KEY_FILE: "/nope.key" })).toThrow(/cannot read \/nope\.pem/);
    expect(() => load({}, ["--frobnicate"])).toThrow(/Unknown option '--frobnicate'/);
    expect(() => load({ LOG_LEVEL: "loud" })).toThrow(/LOG_LEVEL/);
    expect(load({}, ["--help"]).help).toContain("PGLITE_DATA_DIR");
  });

  it("documents every setting in the README's table", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    for (const s of SETTINGS) expect(readme, s.env).toMatch(new RegExp(`^\\| \`${s.env}\` \\|`, "m"));
  });
});
