/**
 * vitest globalSetup: one single-host Ceph (scripts/dev-ceph.sh) for the whole run, when
 * asked for — CI=true or OKEANOS_TEST_CEPH=1 — and stopped (purged) at the end.
 * OKEANOS_TEST_CEPH_CONF=PATH instead uses a cluster already running (pool from
 * OKEANOS_CEPH_POOL, default okeanos), e.g. one started by `scripts/dev-ceph.sh start`.
 *
 * The outcome reaches the test files through provide/inject (testing/target.ts): the
 * cluster, or why there is none. A failed start does not abort the run here; the rados
 * tests then fail with its reason (under CI) or skip loudly (locally).
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { TestProject } from "vitest/node";
import type { RadosTestCluster } from "./target.ts";

const run = promisify(execFile);
const devCeph = join(import.meta.dirname, "..", "..", "..", "..", "scripts", "dev-ceph.sh");
/** dev-ceph waits up to 120 s per step; a whole start under load took 28 s (notes §4). */
const startTimeoutMs = 180_000;

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const pool = process.env["OKEANOS_CEPH_POOL"] ?? "okeanos";
  const existing = process.env["OKEANOS_TEST_CEPH_CONF"];
  if (existing !== undefined && existing !== "") {
    provide(project, { cephConf: existing, pool });
    return undefined;
  }
  if (process.env["CI"] !== "true" && process.env["OKEANOS_TEST_CEPH"] !== "1") {
    provide(project, { reason: "no Ceph cluster requested: set OKEANOS_TEST_CEPH=1 (starts scripts/dev-ceph.sh) or OKEANOS_TEST_CEPH_CONF=PATH" });
    return undefined;
  }
  const dir = await mkdtemp(join(tmpdir(), "okeanos-test-ceph-"));
  const began = Date.now();
  try {
    const { stdout } = await run(devCeph, ["start", dir], { timeout: startTimeoutMs, env: { ...process.env, OKEANOS_CEPH_POOL: pool } });
    const cephConf = stdout.trim();
    console.log(`okeanos: test Ceph cluster up in ${((Date.now() - began) / 1000).toFixed(1)} s (${dir})`);
    provide(project, { cephConf, pool });
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    provide(project, { reason: `scripts/dev-ceph.sh start failed: ${(stderr ?? String(error)).trim()}` });
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
  return async () => {
    await reportClusterErrors(dir);
    await run(devCeph, ["stop", dir, "--purge"], { timeout: 60_000 }).catch((error: unknown) => {
      console.error(`okeanos: stopping the test Ceph cluster in ${dir} failed: ${String(error)}`);
    });
  };
}

/** Most cluster errors logged worth printing: the first ones name the cause. */
const clusterErrorLinesMax = 20;

/**
 * Prints what the cluster logged at error level during the run (an inconsistent or unfound
 * object, a failed OSD…): a test that hangs on an op the OSD parked shows only a timeout,
 * and the cluster's own log, purged with it, is where the cause is.
 */
async function reportClusterErrors(dir: string): Promise<void> {
  const log = await readFile(join(dir, "log", "ceph.cluster.log"), "utf8").catch(() => "");
  const errors = log.split("\n").filter((line) => line.includes("[ERR]"));
  if (errors.length === 0) return;
  console.error(`okeanos: the test Ceph cluster logged ${errors.length} error(s); the first:\n${errors.slice(0, clusterErrorLinesMax).join("\n")}`);
}

function provide(project: TestProject, cluster: RadosTestCluster): void {
  if (cluster.cephConf !== undefined) process.env["CEPH_CONF"] = cluster.cephConf;
  project.provide("radosTestCluster", cluster);
}
