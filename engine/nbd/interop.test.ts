/**
 * Real NBD clients against the server: nbdinfo, qemu-io, qemu-img, nbdcopy, nbdsh
 * (python3-libnbd) and fio's nbd engine against an in-process NbdServer on a unix socket over
 * a file store, and one round through the `okeanos nbd serve` command itself. The suite is
 * engine/testing/nbd-interop.ts (engine/blocker/rados runs it on rados too). With CI=true a
 * missing tool fails the suite; otherwise these tests are skipped with a loud message
 * (testing/require-tool.ts).
 */
import { join } from "node:path";
import { openObjectStore } from "../blocker/open-store.ts";
import { describeNbdInterop } from "../testing/nbd-interop.ts";

describeNbdInterop({
  open: (dir) => openObjectStore(`file:${join(dir, "store")}`, { create: true }),
  cliArgs: (dir) => ["--store", `file:${join(dir, "store")}`],
});
