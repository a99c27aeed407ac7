#!/usr/bin/env node
/**
 * `okeanos`: the command line. Run from a checkout as `node cli/okeanos.ts …` (Node strips
 * the types); an installed package runs the compiled dist/cli/okeanos.js (cli/README.md).
 */
import { enableCompileCache } from "node:module";

// Node's on-disk compile cache also keeps the type-stripped sources: a command starts in
// ~0.2 s instead of ~0.6 s. So the modules are imported only after it is enabled. (This file
// itself was stripped before this line ran, which loads the stripper, amaro: ~0.13 s that
// bin/okeanos.js saves by enabling the cache before importing this file.)
enableCompileCache();
// libuv runs 4 file-system calls at once by default; a barrier fdatasyncs many block files
// and an NBD server keeps many reads in flight, so give it 16 (read when the pool first
// starts, which is after this line: nothing above touched it).
process.env["UV_THREADPOOL_SIZE"] ??= "16";
const args = process.argv.slice(2);
// A rados: store starts connecting now, while the command's modules load (early-store.ts).
const { openStoreEarly, closeUntakenStore, exitAtOnce } = await import("./early-store.ts");
await openStoreEarly(args);
const { main } = await import("./main.ts");
const exitCode = await main(args);
// An early connection the command never took, still waiting for a cluster that does not
// answer, would hold the process until librados' mount timeout: exit at once instead.
if ((await closeUntakenStore()) === "pending") await exitAtOnce(exitCode);
process.exitCode = exitCode;
