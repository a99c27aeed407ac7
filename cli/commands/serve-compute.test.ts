import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { computeUnavailable } from "./serve-compute.ts";

describe("computeUnavailable", () => {
  let dir: string;
  let savedPath: string | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-compute-path-"));
    savedPath = process.env["PATH"];
    process.env["PATH"] = dir;
  });
  afterEach(async () => {
    process.env["PATH"] = savedPath;
    await rm(dir, { recursive: true, force: true });
  });

  async function install(program: string, mode = 0o755): Promise<void> {
    await writeFile(join(dir, program), "#!/bin/sh\n");
    await chmod(join(dir, program), mode);
  }

  it("names every missing program and the packages to install", async () => {
    expect(computeUnavailable("qemu-test")).toBe("qemu-test and genisoimage not found (apt-get install qemu-system-x86 genisoimage)");
    await install("qemu-test");
    expect(computeUnavailable("qemu-test")).toBe("genisoimage not found (apt-get install qemu-system-x86 genisoimage)");
  });

  it("is satisfied only by executables on PATH", async () => {
    await install("qemu-test");
    await install("genisoimage", 0o644);
    expect(computeUnavailable("qemu-test")).toMatch(/^genisoimage not found/);
    await chmod(join(dir, "genisoimage"), 0o755);
    expect(computeUnavailable("qemu-test")).toBeUndefined();
  });
});
