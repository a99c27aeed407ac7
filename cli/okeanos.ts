#!/usr/bin/env node
/**
 * `okeanos`: the command line. Run from a checkout as `node cli/okeanos.ts …` (Node strips
 * the types); an installed package runs the compiled dist/cli/okeanos.js (cli/README.md).
 */
import { enableCompileCache } from "node:module";

// Node's on-disk compile cache also keeps the type-stripped sources: a command starts in
// ~0.2 s instead of ~0.6 s. So the modules are imported only after it is enabled.
enableCompileCache();
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2));
