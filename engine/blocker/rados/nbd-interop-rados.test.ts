/**
 * The NBD interop suite (engine/testing/nbd-interop.ts: nbdinfo, qemu-io, qemu-img convert
 * and compare, nbdcopy, nbdsh, fio's nbd engine at QD32 with verify, `okeanos nbd serve`)
 * on a volume store in RADOS: the same tests as engine/nbd/interop.test.ts, run on a fresh
 * namespace of the test cluster.
 */
import { describeNbdInterop } from "../../testing/nbd-interop.ts";
import { RadosObjectStore } from "./rados.ts";
import { describeRados, testNamespace } from "./testing/target.ts";

describeRados("NBD interop on rados", (target) => {
  const namespace = testNamespace("nbd");
  describeNbdInterop({
    open: () => RadosObjectStore.open({ pool: target.pool, namespace, cephConf: target.cephConf }),
    cliArgs: () => ["--store", `rados:${target.pool}/${namespace}`, "--ceph-conf", target.cephConf],
  });
});
