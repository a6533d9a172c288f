#!/usr/bin/env node
// The `assignment` command (package.json "bin"): registers tsx so that Node can load the
// TypeScript sources, then runs the CLI of src/cli/main.ts.
import { register } from "tsx/esm/api";

register();
const { runCli } = await import("../src/cli/main.ts");
await runCli();
