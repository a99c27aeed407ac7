/**
 * `okeanos file …` as a real process against the real server (identity + the object store
 * gateway, in this process, on 127.0.0.1): every command, its --json result and its exit
 * codes. Blocks are 64 KiB here so that files of a few blocks stay small; the 1 GiB delta
 * measurement with 4 MiB blocks is file-delta.test.ts.
 */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrateToLatest, openDatabase, type MetadataDatabase, type User } from "../../db/index.ts";
import { servePithos, type ServedPithos } from "../../gateways/pithos/testing/server.ts";
import { exitCodes } from "../output.ts";
import type { DownloadResult } from "../pithos-client/download.ts";
import { randomBlockData } from "../pithos-client/testing/block-data.ts";
import type { SyncResult } from "../pithos-client/sync.ts";
import type { UploadResult } from "../pithos-client/upload.ts";
import { okJson, runCli, type CliResult } from "../testing/run-cli.ts";

const blockSizeBytes = 64 * 1024;

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// Each test runs the CLI several times (~1 s of start-up each on a busy 2-core machine).
describe("okeanos file against the object store", { timeout: 180_000 }, () => {
  let dir: string;
  let db: MetadataDatabase;
  let served: ServedPithos;
  let bob: User;
  let env: Record<string, string>;
  const file = (...args: string[]): Promise<CliResult> => runCli(["file", ...args], { env });
  const fileJson = <T>(...args: string[]): Promise<T> => okJson<T>(runCli(["--json", "file", ...args], { env }));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-file-"));
    db = await openDatabase(`sqlite:${join(dir, "okeanos.db")}`);
    await migrateToLatest(db);
    served = await servePithos(db, { blockSizeBytes, hashAlgorithm: "sha256" });
    await served.addUser("alice", "alice-secret");
    bob = await served.addUser("bob", "bob-secret");
    env = { OKEANOS_URL: served.baseUrl, OKEANOS_USER: "alice", OKEANOS_PASSWORD: "alice-secret", OKEANOS_TOKEN: "" };
  });
  afterAll(async () => {
    await served?.close();
    await db?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("uploads, lists, shows, downloads; a changed block is the only one sent and fetched again", async () => {
    const data = randomBlockData(5 * blockSizeBytes + 100, blockSizeBytes);
    const local = join(dir, "a.bin");
    await writeFile(local, data);
    const first = await fileJson<UploadResult>("upload", local, "docs/");
    expect(first).toMatchObject({ container: "docs", object: "a.bin", bytes: data.length, blocks: 6, blocksSent: 6, bytesSent: data.length });

    const containers = await fileJson<Array<{ name: string; count: number }>>("list");
    expect(containers).toEqual([expect.objectContaining({ name: "docs", count: 1 })]);
    const objects = await fileJson<Array<{ name: string; bytes: number; x_object_hash: string }>>("list", "docs");
    expect(objects).toEqual([expect.objectContaining({ name: "a.bin", bytes: data.length, x_object_hash: expect.stringMatching(/^[0-9a-f]{64}$/) })]);
    const info = await fileJson<{ sizeBytes: number; headers: Record<string, string> }>("info", "docs/a.bin");
    expect(info.sizeBytes).toBe(data.length);
    expect(info.headers["x-object-hash"]).toBe(first.objectHash);
    expect((await file("info", "docs/a.bin")).stdout).toMatch(/object hash:\s+[0-9a-f]{64}/);

    const copy = join(dir, "a.copy");
    const fetched = await fileJson<DownloadResult>("download", "docs/a.bin", copy);
    expect(fetched).toMatchObject({ workingFile: "new", blocksFetched: 6, bytes: data.length });
    expect((await readFile(copy)).equals(data)).toBe(true);

    data[2 * blockSizeBytes + 7] = (data[2 * blockSizeBytes + 7] as number) ^ 0xff;
    await writeFile(local, data);
    const second = await fileJson<UploadResult>("upload", local, "docs/a.bin");
    expect(second).toMatchObject({ blocksSent: 1, bytesSent: blockSizeBytes, hashmapRequests: 2 });
    const third = await fileJson<UploadResult>("upload", local, "docs/a.bin");
    expect(third).toMatchObject({ blocksSent: 0, bytesSent: 0, hashmapRequests: 1 });

    const delta = await fileJson<DownloadResult>("download", "docs/a.bin", copy);
    expect(delta).toMatchObject({ workingFile: "existing", blocksFetched: 1, blocksKept: 5 });
    expect((await readFile(copy)).equals(data)).toBe(true);

    const text = await file("upload", local, "docs/a.bin");
    expect(text.stdout).toMatch(/^Uploaded .*a\.bin to docs\/a\.bin \(320\.1 KiB, 6 blocks\): every block was already stored: sent only 1 hashmap request/);
    expect(text.stderr).toBe(""); // no progress bar on a pipe
  });

  it("uploads and downloads an empty file", async () => {
    const local = join(dir, "empty");
    await writeFile(local, "");
    expect(await fileJson<UploadResult>("upload", local, "docs/empty")).toMatchObject({ bytes: 0, blocksSent: 0 });
    const target = join(dir, "empty.copy");
    await fileJson<DownloadResult>("download", "docs/empty", target);
    expect((await stat(target)).size).toBe(0);
  });

  it("syncs a folder up and down; unchanged files cost no upload; --delete removes the rest", async () => {
    const source = join(dir, "tree");
    await mkdir(join(source, "sub"), { recursive: true });
    await writeFile(join(source, "one.txt"), "one");
    await writeFile(join(source, "sub", "two.bin"), randomBytes(3 * blockSizeBytes));
    const up = await fileJson<SyncResult>("sync", source, "tree/photos");
    expect(up.changed.map((entry) => entry.name)).toEqual(["photos/one.txt", "photos/sub/two.bin"]);

    const again = await fileJson<SyncResult>("sync", source, "tree/photos");
    expect(again).toMatchObject({ compared: 2, unchanged: 2, changed: [], transfers: [] });

    await writeFile(join(source, "one.txt"), "ONE!");
    await rm(join(source, "sub", "two.bin"));
    const changed = await fileJson<SyncResult>("sync", source, "tree/photos", "--delete");
    expect(changed).toMatchObject({ unchanged: 0, changed: [{ name: "photos/one.txt", bytes: 4 }], deleted: ["photos/sub/two.bin"] });

    const target = join(dir, "tree-down");
    await mkdir(target);
    await writeFile(join(target, "stale"), "x");
    const down = await fileJson<SyncResult>("sync", "--down", "tree/photos", target, "--delete");
    expect(down).toMatchObject({ compared: 1, changed: [{ name: "photos/one.txt" }], deleted: [join(target, "stale")] });
    expect(await readFile(join(target, "one.txt"), "utf8")).toBe("ONE!");
    expect(await fileJson<SyncResult>("sync", "--down", "tree/photos", target)).toMatchObject({ unchanged: 1, changed: [] });

    const dry = await file("sync", source, "tree/photos", "--dry-run");
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^Dry run: .* 1 compared, 1 unchanged, 0 would be uploaded, 0 would be deleted/);
  });

  it("shares, publishes and unpublishes", async () => {
    const local = join(dir, "flyer.txt");
    await writeFile(local, "come to the party");
    await fileJson("upload", local, "docs/flyer.txt");

    const shared = await fileJson<{ sharing: string }>("share", "docs/flyer.txt", "--read", bob.uuid);
    expect(shared.sharing).toBe(`read=${bob.uuid}`);
    expect((await fileJson<{ headers: Record<string, string> }>("info", "docs/flyer.txt")).headers["x-object-sharing"]).toBe(`read=${bob.uuid}`);
    expect(await fileJson("share", "docs/flyer.txt", "--clear")).toMatchObject({ sharing: "" });

    const published = await fileJson<{ publicUrl: string }>("publish", "docs/flyer.txt");
    expect(published.publicUrl).toMatch(new RegExp(`^${served.baseUrl}/public/`));
    const anonymous = await fetch(published.publicUrl);
    expect(await anonymous.text()).toBe("come to the party");
    expect((await file("publish", "docs/flyer.txt")).stdout.trim()).toBe(published.publicUrl);

    await fileJson("publish", "docs/flyer.txt", "--unpublish");
    expect((await fetch(published.publicUrl)).status).toBe(404);
  });

  it("deletes objects and empty containers, with REMOTE_* exit codes for what fails", async () => {
    const local = join(dir, "gone.txt");
    await writeFile(local, "bye");
    await fileJson("upload", local, "trash/gone.txt");

    const notEmpty = await file("delete", "trash");
    expect(notEmpty.code).toBe(exitCodes.remote.ECONFLICT);
    expect(notEmpty.stderr).toMatch(/^okeanos: delete container trash: .*\(HTTP 409\)\n$/);

    expect(await fileJson("delete", "trash/gone.txt")).toEqual({ container: "trash", object: "gone.txt", deleted: true });
    const missing = await file("download", "trash/gone.txt", join(dir, "nothing"));
    expect(missing.code).toBe(exitCodes.remote.ENOT_FOUND);
    expect(missing.stderr).toMatch(/^okeanos: hashmap of trash\/gone\.txt: .*\(HTTP 404\)\n$/);
    expect((await file("delete", "trash")).code).toBe(0);
  });

  it("refuses a wrong password (REMOTE_EAUTH) and a missing one (usage); accepts a token", async () => {
    const wrong = await runCli(["file", "list"], { env: { ...env, OKEANOS_PASSWORD: "nope" } });
    expect(wrong.code).toBe(exitCodes.remote.EAUTH);
    expect(wrong.stderr).toMatch(/^okeanos: log in as alice at .*\(HTTP 401\)\n$/);
    const none = await runCli(["file", "list"], { env: { ...env, OKEANOS_PASSWORD: "" } });
    expect(none.code).toBe(exitCodes.usage);

    const { token, storageUrl } = await served.login("alice", "alice-secret");
    const byToken = { OKEANOS_URL: served.baseUrl, OKEANOS_USER: "", OKEANOS_PASSWORD: "", OKEANOS_TOKEN: token };
    expect((await runCli(["file", "list"], { env: byToken })).stdout).toMatch(/docs/);
    expect((await runCli(["file", "list"], { env: { ...byToken, OKEANOS_STORAGE_URL: storageUrl } })).stdout).toMatch(/docs/);
    const unreachable = await runCli(["file", "list"], { env: { ...env, OKEANOS_URL: `http://127.0.0.1:${await closedPort()}` } });
    expect(unreachable.code).toBe(exitCodes.remote.EUNREACHABLE);
    expect(unreachable.stderr).toMatch(/connection refused \(ECONNREFUSED\)/);
  });
});
