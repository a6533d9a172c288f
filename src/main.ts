import cluster from "node:cluster";
import net from "node:net";
import { announceWorkerServing, runPrimary } from "./cluster.js";
import { ConfigError, loadConfig, loadTokenFile, type LoadedConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { closeOnSignals, startServer } from "./server.js";
import { DEFAULT_SHUTDOWN_GRACE_MS } from "./server-defaults.js";

let config: LoadedConfig;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`assignment-server: ${err.message}\n`);
  process.exit(2);
}
if (config.help) {
  process.stdout.write(config.help);
  process.exit(0);
}

/** Whether `port` on `host` can be listened on now (0: any port can). */
function canListen(host: string, port: number): Promise<boolean> {
  if (port === 0) return Promise.resolve(true);
  const probe = net.createServer();
  return new Promise((resolve) => {
    probe.once("error", () => resolve(false));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

const portHint = (setting: string, flag: string, port: number, host: string) =>
  `${setting} (--${flag}): port ${port} on ${host} is already in use (is another server running?): stop it, or pick another port with --${flag} <n> (or ${setting})`;

// A taken port is found out before the database is opened (creating an embedded one takes a
// while), and reported as a setting to change, not as a stack trace.
// (Cluster workers listen through the primary, which checked.)
const host = config.server.host ?? "127.0.0.1";
for (const [setting, flag, port, on] of [
  ["PORT", "port", config.server.port, host],
  ["HTTP_PORT", "http-port", config.server.httpPort, host],
  ["METRICS_PORT", "metrics-port", config.server.metricsPort, config.server.metricsHost ?? host],
] as const) {
  if (!cluster.isWorker && port !== undefined && !(await canListen(on, port))) {
    process.stderr.write(`assignment-server: ${portHint(setting, flag, port, on)}\n`);
    process.exit(2);
  }
}

// A cluster worker's log lines (call lines included) say which worker wrote them.
const log = cluster.isWorker ? createLogger(config.logLevel).child({ worker: cluster.worker?.id }) : createLogger(config.logLevel);

if (config.workers > 1 && cluster.isPrimary) {
  await runPrimary({
    workers: config.workers,
    metricsPort: config.server.metricsPort,
    metricsHost: config.server.metricsHost ?? config.server.host ?? "127.0.0.1",
    stopGraceMs: config.server.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS,
    log,
  });
} else {
  await serve();
}

async function serve(): Promise<void> {
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer({ ...config.server, clusterWorker: cluster.isWorker, logger: log });
  } catch (err) {
    const message = (err as Error)?.message ?? String(err);
    if ((err as NodeJS.ErrnoException)?.code === "EADDRINUSE" || /EADDRINUSE|No address added out of total/.test(message)) {
      // Taken between the check above and the start.
      log.fatal(
        { error: message },
        `could not start: a port is already in use (${message}); pick another with --port, --http-port or --metrics-port`,
      );
    } else {
      log.fatal({ err }, "could not start");
    }
    process.exit(1);
  }
  closeOnSignals(server, log);
  if (cluster.isWorker) announceWorkerServing(server.port);
  reloadTokensOnSighup(server);
}

// SIGHUP reads the token file again: its tokens replace the old ones for every call from then on.
// A file that cannot be read or is bad changes nothing (the old tokens stay) and is logged.
function reloadTokensOnSighup(server: Awaited<ReturnType<typeof startServer>>): void {
  const tokensFile = config.tokensFile;
  if (tokensFile === undefined) return;
  process.on("SIGHUP", () => {
    try {
      const tokens = server.replaceTokens(loadTokenFile(tokensFile));
      log.info({ file: tokensFile, tokens: tokens.countByRole() }, "token file reloaded");
    } catch (err) {
      log.error(
        { file: tokensFile, err: { message: (err as Error).message } },
        `token file not reloaded, the tokens in use stay: ${(err as Error).message}`,
      );
    }
  });
}
