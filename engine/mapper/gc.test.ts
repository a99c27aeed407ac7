import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FileObjectStore } from "../blocker/file.ts";
import { Engine } from "../engine.ts";
import { gcReferrerSuite, stream, type StoreKind } from "../testing/gc-referrers.ts";

/** gc paused between mark and sweep while referrers run: engine/testing/gc-referrers.ts. */
const blockSizeBytes = 4096;

describe.each<StoreKind>(["memory", "file"])("gc against referrers on the %s store", (storeKind) => gcReferrerSuite(storeKind));

describe("gc against a referrer in another process (file store)", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-gc-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("leaves content blocks alone while another process holds the reference lock shared", async () => {
    const engine = await Engine.init(await FileObjectStore.open(dir), { blockSizeBytes, hashAlgorithm: "sha256" });
    try {
      const data = Buffer.alloc(blockSizeBytes, 7);
      await engine.writeFile("old", stream(data));
      await engine.delete("old");
      const storeModule = new URL("../blocker/file.ts", import.meta.url).href;
      const script = `const { FileObjectStore } = await import(process.argv[1]);
const store = await FileObjectStore.open(process.argv[2]);
await store.lock("l.refs", "child upload", 30000, "shared");
console.log("held");
setInterval(() => {}, 1000);`;
      const child = spawn(process.execPath, ["--input-type=module", "-e", script, storeModule, dir], { stdio: ["ignore", "pipe", "inherit"] });
      try {
        const lines = createInterface({ input: child.stdout });
        expect(((await once(lines, "line")) as [string])[0]).toBe("held");
        lines.close();
        const result = await engine.gc({ graceMs: 0, lockWaitMs: 100 });
        expect(result.contentSweepSkipped).toBe(true);
        expect(result.removedByKind["content-block"]).toBeUndefined();
        child.kill("SIGKILL");
        await once(child, "exit");
        expect((await engine.gc({ graceMs: 0 })).removedByKind["content-block"]).toBe(1);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      }
    } finally {
      await engine.close();
    }
  });
});
