/**
 * qcow2 import (convert.ts): only self-contained qcow2 is converted — a backing file or an
 * external data file would make qemu-img read host files the uploader names — and the
 * upload itself is bounded. Over HTTP, a refused qcow2 leaves the image queued.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { runTool } from "../../engine/nbd/testing/require-tool.ts";
import { checkQcow2, qcow2ToRaw, receiveToFile } from "./convert.ts";
import { isPlanktonError } from "./errors.ts";
import { useImageHarness } from "./testing/harness.ts";
import { requireTools } from "../../engine/nbd/testing/require-tool.ts";

const haveQemu = requireTools("qemu-img", "qemu-io");
const describeIf = haveQemu ? describe : describe.skip;
const describeEachIf = haveQemu ? describeEachEngine : (title: string) => describe.skip(title, () => {});

let dir: string;

async function qemuImg(...args: string[]): Promise<void> {
  const result = await runTool("qemu-img", args, { cwd: dir });
  if (result.code !== 0) throw new Error(`qemu-img ${args.join(" ")}: ${result.stderr}`);
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!isPlanktonError(error)) throw new Error(`expected a PlanktonError, got ${String(error)}`);
  return `${error.code}: ${error.message}`;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "okeanos-convert-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describeIf("qcow2 import", () => {
  it("converts a self-contained qcow2 to the raw bytes qemu-img gives", async () => {
    await qemuImg("create", "-q", "-f", "qcow2", "plain.qcow2", "1M");
    await runTool("qemu-io", ["-f", "qcow2", "-c", "write -P 0x5a 4k 8k", "plain.qcow2"], { cwd: dir });
    expect(await checkQcow2("qemu-img", join(dir, "plain.qcow2"))).toBe(1024 * 1024);
    await qcow2ToRaw("qemu-img", join(dir, "plain.qcow2"), join(dir, "plain.raw"));
    const raw = await readFile(join(dir, "plain.raw"));
    expect(raw.length).toBe(1024 * 1024);
    expect(raw.subarray(4096, 4096 + 8192).every((byte) => byte === 0x5a)).toBe(true);
    expect(raw.subarray(0, 4096).every((byte) => byte === 0)).toBe(true);
  });

  it("refuses a backing file, an external data file, and data that is not qcow2", async () => {
    await writeFile(join(dir, "secret.raw"), "host file contents");
    await qemuImg("create", "-q", "-f", "qcow2", "-b", join(dir, "secret.raw"), "-F", "raw", "backed.qcow2", "1M");
    expect(await refusal(checkQcow2("qemu-img", join(dir, "backed.qcow2")))).toMatch(/^EBAD_REQUEST: .*backing file/);
    await qemuImg("create", "-q", "-f", "qcow2", "-o", `data_file=${join(dir, "external.raw")}`, "external.qcow2", "1M");
    expect(await refusal(checkQcow2("qemu-img", join(dir, "external.qcow2")))).toMatch(/^EBAD_REQUEST: .*external data file/);
    await writeFile(join(dir, "garbage"), Buffer.alloc(65536, 7));
    expect(await refusal(checkQcow2("qemu-img", join(dir, "garbage")))).toMatch(/^EBAD_REQUEST: .*not a valid qcow2/);
  });

  it("receives at most the limit (413 past it)", async () => {
    expect(await receiveToFile(Readable.from([Buffer.alloc(100), Buffer.alloc(100)]), join(dir, "ok"), 200)).toBe(200);
    expect(await refusal(receiveToFile(Readable.from([Buffer.alloc(100), Buffer.alloc(101)]), join(dir, "big"), 200))).toMatch(/^ETOO_LARGE/);
  });
});

describeEachIf("qcow2 uploads over HTTP", (databases) => {
  const harness = useImageHarness(databases, { blockSizeBytes: 4096 });

  it("stores a qcow2 upload as raw (disk_format raw); a refused one leaves the image queued", async () => {
    const alice = await harness().user("alice");
    await qemuImg("create", "-q", "-f", "qcow2", "up.qcow2", "256K");
    await runTool("qemu-io", ["-f", "qcow2", "-c", "write -P 0x33 64k 4k", "up.qcow2"], { cwd: dir });
    await qemuImg("convert", "-f", "qcow2", "-O", "raw", "up.qcow2", "up.raw");
    const expected = await readFile(join(dir, "up.raw"));
    const created = await alice.expectJson("POST", "/v2/images", 201, { json: { name: "q", disk_format: "qcow2", container_format: "bare" } });
    const id = created["id"] as string;
    await alice.expectJson("PUT", `/v2/images/${id}/file`, 204, { headers: { "content-type": "application/octet-stream" }, chunks: [await readFile(join(dir, "up.qcow2"))] });
    expect(await alice.expectJson("GET", `/v2/images/${id}`, 200)).toMatchObject({ status: "active", disk_format: "raw", size: expected.length });
    expect((await alice.image("GET", `/v2/images/${id}/file`)).body.equals(expected)).toBe(true);

    const bad = (await alice.expectJson("POST", "/v2/images", 201, { json: { name: "bad", disk_format: "qcow2", container_format: "bare" } }))["id"] as string;
    const refused = await alice.image("PUT", `/v2/images/${bad}/file`, { headers: { "content-type": "application/octet-stream" }, body: Buffer.alloc(5000, 1) });
    expect(refused.status).toBe(400);
    expect(refused.json<{ message: string }>().message).toMatch(/not a valid qcow2/);
    expect((await alice.expectJson("GET", `/v2/images/${bad}`, 200))["status"]).toBe("queued");
  });
});
