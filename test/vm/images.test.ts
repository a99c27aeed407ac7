/**
 * The storage synergy end to end (issue 7, "Done when: End to end"): a disk image is uploaded
 * with the sync client (`okeanos file upload`), registered as an image through Plankton
 * (v1, `X-Image-Meta-Location: pithos://…`), spawned into a volume, served over NBD by
 * `okeanos serve` to qemu-system-x86_64 (TCG) and booted; the guest writes a file; the volume
 * is frozen into a new image (`okeanos image create --from-volume`); that image is spawned
 * again and booted, and the file is there.
 *
 * Asserted on the way: registering and spawning create no block object (only the guest's
 * writes and hashing do); the frozen image's hashmap shares every hash whose block did not
 * change; the frozen image downloaded through Pithos+ is byte-identical to the same image
 * read over NBD.
 *
 * The "bootable disk" is the data disk of the harness's guest (kernel and initramfs given to
 * qemu, the disk mounted as the root of the guest's work): an ext4 file system made on the
 * host. Needs what test/vm/vm.test.ts needs, plus nbdcopy (libnbd-bin).
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openObjectStore } from "../../engine/blocker/open-store.ts";
import { Engine } from "../../engine/engine.ts";
import { runCli } from "../../cli/testing/run-cli.ts";
import { startServe, type ServeProcess } from "../../cli/testing/serve-process.ts";
import { bootTimeoutMs, buildGuest, exportThroughEngine, guestBuildTimeoutMs, hostTools, missingTools, readGuestFile, runTool, startGuest, type Guest } from "./harness.ts";

const ci = process.env["CI"] === "true";
const missing = missingTools([...hostTools, "nbdcopy"]);
const install = "apt-get install qemu-system-x86 e2fsprogs libnbd-bin (test/vm/README.md)";
if (missing.length > 0 && !ci) console.warn(`\n*** test/vm/images SKIPPED: ${missing.join(", ")} not found. To run it: ${install} ***\n`);

const diskBytes = 64 * 1024 * 1024;
/** 1 MiB blocks: the 64 MiB disk is 64 blocks, so a guest's few writes leave most of them shared. */
const blockBytes = 1024 * 1024;
const seqLines = 20_000;

function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

describe.skipIf(missing.length > 0 && !ci)("images: upload, register, spawn, boot, freeze, spawn again", () => {
  let dir: string;
  let storeDir: string;
  let guest: Guest;
  let served: ServeProcess;
  let socketPath: string;
  let cliEnv: Record<string, string>;
  const token = randomBytes(8).toString("hex");

  const okeanos = async (...args: string[]): Promise<string> => {
    const result = await runCli(["--store", `file:${storeDir}`, ...args], { env: cliEnv, cwd: dir });
    if (result.code !== 0) throw new Error(`okeanos ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
    return result.stdout;
  };

  /** Content-addressed block objects in the store now. */
  const contentBlocks = async (): Promise<number> => {
    const engine = await Engine.open(await openObjectStore(`file:${storeDir}`));
    try {
      let count = 0;
      for await (const _ of engine.objects.list("b.")) count++;
      return count;
    } finally {
      await engine.close();
    }
  };

  beforeAll(async () => {
    if (missing.length > 0) throw new Error(`CI=true and host tools are missing: ${missing.join(", ")}. ${install}`);
    dir = await mkdtemp(join(tmpdir(), "okeanos-images-"));
    storeDir = join(dir, "store");
    socketPath = join(dir, "nbd.sock");
    guest = await buildGuest();
    const initialised = await runCli(["--store", `file:${storeDir}`, "store", "init", "--block-size", "1M"], { cwd: dir });
    expect(initialised.code, initialised.stderr).toBe(0);
    const database = `sqlite:${join(dir, "okeanos.db")}`;
    served = await startServe(["--port", "0", "--nbd-socket", socketPath, "--log-level", "warn"], { cwd: dir, env: { OKEANOS_DATABASE: database }, globalArgs: ["--store", `file:${storeDir}`] });
    const admin = served.banner.firstUser!;
    cliEnv = { OKEANOS_DATABASE: database, OKEANOS_URL: served.banner.baseUrl, OKEANOS_USER: admin.name, OKEANOS_PASSWORD: admin.password };
  }, guestBuildTimeoutMs + 30_000);

  afterAll(async () => {
    if (served !== undefined) await served.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it(
    "moves no data to register or spawn, and the frozen image carries the guest's file",
    async () => {
      // An ext4 disk made on the host, with a file in it.
      const source = join(dir, "source");
      await mkdir(source);
      await writeFile(join(source, "hello.txt"), "made on the host\n");
      const diskPath = join(dir, "base.raw");
      const disk = await open(diskPath, "w");
      await disk.truncate(diskBytes);
      await disk.close();
      await runTool("mkfs.ext4", ["-q", "-F", "-L", "okeanos", "-d", source, diskPath]);

      // 1. Upload with the sync client.
      await okeanos("file", "upload", diskPath, "images/base.raw");
      const blocksAfterUpload = await contentBlocks();

      // 2. Register through Plankton v1: one row, no block.
      const login = await fetch(`${served.banner.baseUrl}/auth/v1.0`, { headers: { "x-auth-user": cliEnv["OKEANOS_USER"]!, "x-auth-key": cliEnv["OKEANOS_PASSWORD"]! } });
      const authToken = login.headers.get("x-auth-token")!;
      const account = login.headers.get("x-storage-url")!.split("/AUTH_")[1]!;
      const registered = await fetch(`${served.banner.baseUrl}/image/v1/images`, {
        method: "POST",
        headers: {
          "x-auth-token": authToken,
          "x-image-meta-name": "base",
          "x-image-meta-location": `pithos://${account}/images/base.raw`,
          "x-image-meta-disk-format": "raw",
          "x-image-meta-container-format": "bare",
        },
      });
      expect(registered.status, await registered.clone().text()).toBeLessThan(300);
      expect(await contentBlocks()).toBe(blocksAfterUpload);

      // 3. Spawn a volume from it: a clone of the map, no block.
      await okeanos("image", "spawn", "base", "vm1", "--owner", "admin");
      expect(await contentBlocks()).toBe(blocksAfterUpload);

      // 4. Boot it over NBD from okeanos serve; the guest mounts the host-made ext4, writes
      //    token.txt and seq.txt, then, told to stop, post.txt; unmounts and powers off.
      const note = randomBytes(8).toString("hex");
      const running = startGuest(guest, { socketPath, exportName: "vm1", params: { task: "live", token, lines: String(seqLines), note } });
      await running.waitFor(/^OKEANOS-VM-READY: /m);
      running.send("stop");
      const booted = await running.result;
      expect(booted.result).toMatch(new RegExp(`^live-done token=${token} `));
      // The guest's writes are copy-on-write private blocks: still no new content block.
      expect(await contentBlocks()).toBe(blocksAfterUpload);

      // 5. Freeze vm1 into an image: snapshot, hash (stores the changed blocks), file, register.
      const frozen = JSON.parse(await okeanos("--json", "image", "create", "frozen", "--from-volume", "vm1", "--owner", "admin")) as {
        hash: { storedBlocks: number; totalBlocks: number };
        file: { container: string; path: string };
      };
      // The frozen image is a file named by its id, as Glance's uploads are (images/<id>).
      const frozenPath = frozen.file.path;
      const blocksAfterFreeze = await contentBlocks();
      expect(blocksAfterFreeze - blocksAfterUpload).toBe(frozen.hash.storedBlocks);
      expect(frozen.hash.storedBlocks).toBeGreaterThan(0);
      expect(frozen.hash.storedBlocks).toBeLessThan(frozen.hash.totalBlocks / 2);

      // The frozen image shares every hash whose block did not change (hashes differ exactly
      // where the bytes do), read through Pithos+'s hashmaps and the data itself.
      const hashmap = async (path: string) =>
        ((await (await fetch(`${served.banner.objectStore}/AUTH_${account}/images/${path}?hashmap&format=json`, { headers: { "x-auth-token": authToken } })).json()) as { hashes: string[] }).hashes;
      const base = await hashmap("base.raw");
      const after = await hashmap(frozenPath);
      expect(after).toHaveLength(base.length);
      const frozenRaw = join(dir, "frozen-pithos.raw");
      await okeanos("file", "download", `images/${frozenPath}`, frozenRaw);
      const baseBytes = await readFile(diskPath);
      const frozenBytes = await readFile(frozenRaw);
      let shared = 0;
      for (let index = 0; index < base.length; index++) {
        const same = baseBytes.subarray(index * blockBytes, (index + 1) * blockBytes).equals(frozenBytes.subarray(index * blockBytes, (index + 1) * blockBytes));
        expect(after[index] === base[index], `block ${index}`).toBe(same);
        if (same) shared++;
      }
      expect(shared).toBe(base.length - frozen.hash.storedBlocks);

      // The image through Pithos+ = the image read over NBD: the image's own map (a frozen
      // map, found by its content hash) is an export of okeanos serve too.
      const objectHash = (await fetch(`${served.banner.objectStore}/AUTH_${account}/images/${frozenPath}`, { method: "HEAD", headers: { "x-auth-token": authToken } })).headers.get("x-object-hash");
      const maps = JSON.parse(await okeanos("--json", "volume", "list")) as Array<{ name: string; kind: string }>;
      let imageMap: string | undefined;
      for (const map of maps.filter((entry) => entry.kind === "file")) {
        const info = JSON.parse(await okeanos("--json", "volume", "info", map.name)) as { header: { contentHash: string | null } };
        if (info.header.contentHash === objectHash) imageMap = map.name;
      }
      expect(imageMap).toBeDefined();
      const overNbd = join(dir, "frozen-nbd.raw");
      await runTool("nbdcopy", [`nbd+unix:///${imageMap}?socket=${socketPath}`, overNbd]);
      expect(sha256(await readFile(overNbd))).toBe(sha256(frozenBytes));

      // 6. Spawn the frozen image again (no block) and boot it: the guest's file is there.
      await okeanos("volume", "create", "vm2", "--from-image", "frozen", "--owner", "admin");
      expect(await contentBlocks()).toBe(blocksAfterFreeze);
      const checkNote = randomBytes(8).toString("hex");
      const again = await startGuest(guest, { socketPath, exportName: "vm2", params: { task: "check", note: checkNote } }).result;
      expect(again.result).toMatch(new RegExp(`^check-done token=${token} `));
      const vm2Raw = join(dir, "vm2.raw");
      await exportThroughEngine(storeDir, "vm2", vm2Raw);
      expect((await readGuestFile(vm2Raw, "/post.txt"))?.trim()).toBe(note);
      expect(await readGuestFile(vm2Raw, "/hello.txt")).toBe("made on the host\n");
      expect((await readGuestFile(vm2Raw, "/note.txt"))?.trim()).toBe(checkNote);
    },
    4 * bootTimeoutMs,
  );
});
