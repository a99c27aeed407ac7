/** The QEMU hypervisor driver (README.md): what the compute service and serve import. */
export { QemuDriver, type QemuDriverOptions } from "./driver.ts";
export { writeSeedIso, seedFiles } from "./nocloud.ts";
export { QmpClient, QmpError, isQmpError, qmpExecute } from "./qmp.ts";
