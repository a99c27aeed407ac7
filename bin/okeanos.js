#!/usr/bin/env node
// The `okeanos` bin. Node strips TypeScript types only outside node_modules, so:
// - installed (this file under node_modules): run dist/, the JavaScript that `npm pack`
//   compiled from the sources (prepack → npm run build);
// - in a checkout (or `npm link`ed): run cli/okeanos.ts itself, so it is never stale.
// cli/README.md explains the choice.
import { existsSync } from "node:fs";
import { enableCompileCache } from "node:module";
import { sep } from "node:path";
import process from "node:process";
import { URL } from "node:url";

// Before anything TypeScript is imported: a .ts module loaded with the cache off is
// type-stripped by amaro, whose own loading costs ~0.13 s of a ~0.45 s command; with the
// cache on, cli/okeanos.ts and everything it imports come stripped from the cache and amaro
// is never loaded (bench/RESULTS.md, RADOS run 6). cli/okeanos.ts enables it too, for
// `node cli/okeanos.ts`, but only after itself has been stripped.
enableCompileCache();

const installed = import.meta.dirname.split(sep).includes("node_modules");
const entry = new URL(installed ? "../dist/cli/okeanos.js" : "../cli/okeanos.ts", import.meta.url);
if (installed && !existsSync(entry)) {
  process.stderr.write("okeanos: this installation has no dist/: install a package made by `npm pack`, or run `npm run build` in it\n");
  process.exit(1);
}
// Stacks of the compiled code point back into the .ts sources (shipped alongside).
if (installed && process.env.OKEANOS_DEBUG === "1") process.setSourceMapsEnabled(true);
await import(entry.href);
