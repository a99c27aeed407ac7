/**
 * The object store with the clients people use (issue 6 "Done when"): the `swift` CLI
 * (python3-swiftclient) and `rclone` with a swift remote, against the real server
 * (testing/server.ts), on SQLite and PostgreSQL. Missing clients skip loudly, and fail
 * under CI=true.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { requireTools, runTool } from "../../engine/nbd/testing/require-tool.ts";
import { servePithos, type ServedPithos } from "./testing/server.ts";

const haveClients = requireTools("swift", "rclone");

async function treeDigest(root: string): Promise<Record<string, string>> {
  const digest: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else digest[relative(root, path)] = createHash("sha256").update(await readFile(path)).digest("hex");
    }
  };
  await walk(root);
  return digest;
}

async function md5(path: string): Promise<string> {
  return createHash("md5").update(await readFile(path)).digest("hex");
}

const describeWithClients = haveClients ? describeEachEngine : (title: string) => describe.skip(title, () => {});

describeWithClients("the swift CLI and rclone against the object store", (databases) => {
  let served: ServedPithos;
  let dir: string;
  let swiftArgs: string[];
  let rcloneEnv: Record<string, string>;
  // The CLIs' Python must be Debian's (python3-swiftclient); /usr/bin first.
  const env = { PATH: `/usr/bin:${process.env["PATH"] ?? ""}` };

  const swift = async (...args: string[]): Promise<string> => {
    const result = await runTool("swift", [...swiftArgs, ...args], { cwd: dir, env, timeoutMs: 120_000 });
    if (result.code !== 0) throw new Error(`swift ${args.join(" ")} exited ${result.code}\n${result.stderr}\n${result.stdout}`);
    return result.stdout;
  };
  const rclone = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    runTool("rclone", [...args], { cwd: dir, env: { ...env, ...rcloneEnv }, timeoutMs: 120_000 });

  beforeAll(async () => {
    const db = await databases.open();
    // 1 MiB blocks: the multi-megabyte files below span several blocks.
    served = await servePithos(db, { blockSizeBytes: 1024 * 1024 });
    await served.addUser("alice", "alice-secret");
    dir = await mkdtemp(join(tmpdir(), "okeanos-swift-"));
    swiftArgs = ["-A", `${served.baseUrl}/auth/v1.0`, "-U", "alice", "-K", "alice-secret"];
    rcloneEnv = {
      RCLONE_CONFIG: join(dir, "rclone.conf"),
      RCLONE_CONFIG_OK_TYPE: "swift",
      RCLONE_CONFIG_OK_AUTH: `${served.baseUrl}/auth/v1.0`,
      RCLONE_CONFIG_OK_USER: "alice",
      RCLONE_CONFIG_OK_KEY: "alice-secret",
    };
    await mkdir(join(dir, "up", "docs", "deep"), { recursive: true });
    await writeFile(join(dir, "up", "hello.txt"), "hello, world\n");
    await writeFile(join(dir, "up", "docs", "a+b&c=d.txt"), "plus, ampersand, equals\n");
    await writeFile(join(dir, "up", "docs", "deep", "zeros.bin"), Buffer.alloc(3 * 1024 * 1024 + 17));
    await writeFile(join(dir, "up", "docs", "big.bin"), randomBytes(5 * 1024 * 1024 + 123));
    await writeFile(join(dir, "up", "empty"), "");
  });

  afterAll(async () => {
    await served?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("swift upload, list with prefix and delimiter, stat, download", async () => {
    await swift("upload", "files", "up");
    const names = (await swift("list", "files")).trim().split("\n");
    expect(names).toEqual(["up/docs/a+b&c=d.txt", "up/docs/big.bin", "up/docs/deep/zeros.bin", "up/empty", "up/hello.txt"]);
    expect((await swift("list", "files", "--prefix", "up/docs/", "--delimiter", "/")).trim().split("\n")).toEqual([
      "up/docs/a+b&c=d.txt",
      "up/docs/big.bin",
      "up/docs/deep/",
    ]);
    const stat = await swift("stat", "files", "up/docs/big.bin");
    expect(stat).toMatch(new RegExp(`ETag: ${await md5(join(dir, "up", "docs", "big.bin"))}`));
    expect(stat).toMatch(/Content Length: 5243003/);
    expect(stat).toMatch(/Meta Mtime: \d+\.\d+/);
    expect(await swift("stat")).toMatch(/Objects: 5/);

    await swift("download", "files", "--output-dir", "down");
    expect(await treeDigest(join(dir, "down", "up"))).toEqual(await treeDigest(join(dir, "up")));
  });

  it("swift post sets metadata; copy and delete", async () => {
    await swift("post", "-m", "Color:blue", "files", "up/hello.txt");
    expect(await swift("stat", "files", "up/hello.txt")).toMatch(/Meta Color: blue/);
    await swift("copy", "-d", "/files/copy-of-hello.txt", "files", "up/hello.txt");
    await swift("download", "files", "copy-of-hello.txt", "-o", "copied.txt");
    expect(await readFile(join(dir, "copied.txt"), "utf8")).toBe("hello, world\n");
    expect(await swift("stat", "files", "copy-of-hello.txt")).toMatch(/Meta Color: blue/);
    await swift("delete", "files", "copy-of-hello.txt");
    expect(await swift("list", "files")).not.toMatch(/copy-of-hello/);
  });

  for (const slo of [false, true]) {
    it(`swift upload --segment-size ${slo ? "--use-slo " : ""}(a segmented large object) and download`, async () => {
      const container = slo ? "slo" : "dlo";
      const source = join(dir, "up", "docs", "big.bin");
      await swift("upload", "--segment-size", "1000000", ...(slo ? ["--use-slo"] : []), container, "--object-name", "big.bin", source);
      const segments = (await swift("list", `${container}_segments`)).trim().split("\n");
      expect(segments).toHaveLength(6);
      const stat = await swift("stat", container, "big.bin");
      expect(stat).toMatch(/Content Length: 5243003/);
      expect(stat).toMatch(slo ? /X-Static-Large-Object: True/ : /Manifest: dlo_segments\/big\.bin\//);
      await swift("download", container, "big.bin", "-o", `${container}.bin`);
      expect(await md5(join(dir, `${container}.bin`))).toBe(await md5(source));
      await swift("delete", container, "big.bin");
      // swift deletes a DLO's segments itself, and an SLO's through ?multipart-manifest=delete.
      const left = await runTool("swift", [...swiftArgs, "list", `${container}_segments`], { cwd: dir, env });
      expect(left.stdout.trim()).toBe("");
    });
  }

  it("rclone sync up, check, sync down; after one change only that file moves", async () => {
    const up = join(dir, "up");
    let result = await rclone("sync", up, "ok:synced", "-v");
    expect(result.code, result.stderr).toBe(0);
    result = await rclone("check", up, "ok:synced");
    expect(result.code, result.stderr).toBe(0);
    result = await rclone("sync", "ok:synced", join(dir, "rclone-down"));
    expect(result.code, result.stderr).toBe(0);
    expect(await treeDigest(join(dir, "rclone-down"))).toEqual(await treeDigest(up));

    await writeFile(join(up, "hello.txt"), "hello again, world\n");
    result = await rclone("sync", up, "ok:synced", "-v", "--stats-one-line");
    expect(result.code, result.stderr).toBe(0);
    // rclone -v logs one "Copied" line per transferred file.
    expect(result.stderr.match(/: Copied/g)).toHaveLength(1);
    expect(result.stderr).toMatch(/hello\.txt: Copied/);
    result = await rclone("check", up, "ok:synced");
    expect(result.code, result.stderr).toBe(0);
    result = await rclone("cat", "ok:synced/hello.txt");
    expect(result.stdout).toBe("hello again, world\n");
  });
});
