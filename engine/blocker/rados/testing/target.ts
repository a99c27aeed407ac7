/**
 * Where the rados tests run: the cluster testing/global-setup.ts provided, a fresh store
 * (its own RADOS namespace) per call, and the rule for when there is no cluster:
 * under CI=true (or OKEANOS_TEST_CEPH=1) the tests FAIL with the reason; otherwise they
 * skip, saying loudly why.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { describe, inject, it } from "vitest";
import { radosAddonInstructions, radosAddonPath } from "../native.ts";
import { RadosObjectStore, type RadosStoreOptions } from "../rados.ts";

export interface RadosTestCluster {
  cephConf?: string;
  pool?: string;
  /** Why there is no cluster. */
  reason?: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    radosTestCluster: RadosTestCluster;
  }
}

const required = process.env["CI"] === "true" || process.env["OKEANOS_TEST_CEPH"] === "1";

export interface RadosTarget {
  cephConf: string;
  pool: string;
}

function resolveTarget(): RadosTarget | string {
  const cluster = inject("radosTestCluster") as RadosTestCluster | undefined;
  const addon = process.env["OKEANOS_RADOS_ADDON"] ?? radosAddonPath;
  if (!existsSync(addon)) return `the rados addon is not built (${addon}): ${radosAddonInstructions}`;
  if (cluster?.cephConf === undefined || cluster.pool === undefined) return cluster?.reason ?? "no Ceph cluster (vitest.config.ts has no globalSetup for it?)";
  return { cephConf: cluster.cephConf, pool: cluster.pool };
}

const resolved = resolveTarget();

/** The cluster, or undefined when the rados tests skip. */
export const radosTarget: RadosTarget | undefined = typeof resolved === "string" ? undefined : resolved;

/** describe() on a cluster; without one: fail under CI, else skip with a loud message. */
export function describeRados(name: string, body: (target: RadosTarget) => void): void {
  if (typeof resolved !== "string") {
    describe(name, () => body(resolved));
    return;
  }
  if (required) {
    describe(name, () => {
      it("needs a Ceph cluster and the rados addon", () => {
        throw new Error(`rados tests cannot run: ${resolved}`);
      });
    });
    return;
  }
  console.warn(`\n*** SKIPPING rados tests (${name}): ${resolved}\n`);
  describe.skip(name, () => body({ cephConf: "", pool: "" }));
}

/** A fresh, empty store: its own namespace in the test pool. */
export function openTestStore(target: RadosTarget, label: string, options: Partial<RadosStoreOptions> = {}): Promise<RadosObjectStore> {
  return RadosObjectStore.open({ pool: target.pool, namespace: testNamespace(label), cephConf: target.cephConf, ...options });
}

export function testNamespace(label: string): string {
  return `test-${label}-${randomBytes(6).toString("hex")}`;
}
