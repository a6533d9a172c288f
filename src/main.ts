import { ConfigError, loadConfig, loadTokenFile, type LoadedConfig } from "./config.js";
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

// SIGHUP reads the token file again: its tokens replace the old ones for every call from then on.
// A file that cannot be read or is bad changes nothing (the old tokens stay) and is logged.
const tokensFile = config.tokensFile;
if (tokensFile !== undefined) {
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
