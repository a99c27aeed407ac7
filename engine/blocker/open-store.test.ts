import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isEngineError } from "../errors.ts";
import { openObjectStore } from "./open-store.ts";

describe("openObjectStore", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-open-store-"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function expectCode(uri: string, code: string, message: RegExp, options = {}): Promise<void> {
    const error: unknown = await openObjectStore(uri, options).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(isEngineError(error), String(error)).toBe(true);
    expect((error as { code: string }).code).toBe(code);
    expect((error as Error).message).toMatch(message);
  }

  it("opens file:PATH, file:///PATH and a bare path as the same directory", async () => {
    const storeDir = join(dir, "store");
    const uris = [`file:${storeDir}`, pathToFileURL(storeDir).href, storeDir, `file:${relative(process.cwd(), storeDir)}`];
    for (const [i, uri] of uris.entries()) {
      const store = await openObjectStore(uri, { create: i === 0 });
      try {
        expect(store.uri).toBe(`file:${storeDir}`);
        expect(store.capabilities.persistent).toBe(true);
        await store.writeFull(`x.${i}`, Buffer.from("hello"));
      } finally {
        await store.close();
      }
    }
    const reopened = await openObjectStore(storeDir);
    try {
      expect((await reopened.read("x.3", 0, 5)).toString()).toBe("hello");
    } finally {
      await reopened.close();
    }
  });

  it("creates nothing for a missing directory unless asked to", async () => {
    await expectCode(`file:${join(dir, "absent")}`, "ENO_STORE", /store init/);
    await expect(stat(join(dir, "absent"))).rejects.toThrow();
    await writeFile(join(dir, "plain"), "x");
    await expectCode(join(dir, "plain"), "EINVALID", /not a directory/);
  });

  it("opens memory: stores that do not persist", async () => {
    const store = await openObjectStore("memory:");
    expect(store.capabilities.persistent).toBe(false);
    expect(store.uri).toBe("memory:memory");
    await store.close();
    expect((await openObjectStore("memory:tests")).uri).toBe("memory:tests");
  });

  it("refuses unknown schemes, an empty file path and a rados: URI without a pool with EINVALID", async () => {
    await expectCode("s3:bucket", "EINVALID", /unknown store scheme "s3:".*file:, memory:, rados:/);
    await expectCode("file:", "EINVALID", /needs a directory/);
    await expectCode("rados:", "EINVALID", /needs a pool/);
    await expectCode("rados:/ns", "EINVALID", /needs a pool/);
    await expectCode("rados:volumes/", "EINVALID", /empty RADOS namespace/);
  });

  it("says what to install and run when the rados addon is not built", async () => {
    const saved = process.env["OKEANOS_RADOS_ADDON"];
    process.env["OKEANOS_RADOS_ADDON"] = join(dir, "absent.node");
    try {
      await expectCode("rados:volumes", "ENO_STORE", /not built.*librados-dev.*scripts\/build-rados\.sh/);
    } finally {
      if (saved === undefined) delete process.env["OKEANOS_RADOS_ADDON"];
      else process.env["OKEANOS_RADOS_ADDON"] = saved;
    }
  });
});
