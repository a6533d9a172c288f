import cluster from "node:cluster";
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
    log.fatal({ err }, "could not start");
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
