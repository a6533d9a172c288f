import { ConfigError, loadConfig, type LoadedConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { closeOnSignals, startServer } from "./server.js";

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

const log = createLogger(config.logLevel);

let server: Awaited<ReturnType<typeof startServer>>;
try {
  server = await startServer({ ...config.server, logger: log });
} catch (err) {
  log.fatal({ err }, "could not start");
  process.exit(1);
}

closeOnSignals(server, log);
