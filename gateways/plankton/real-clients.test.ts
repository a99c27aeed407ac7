/**
 * Debian's `openstack` client (python3-openstackclient: openstacksdk over Glance v2) against
 * the real server, on SQLite and PostgreSQL (issue 7 "Done when"): image create --file, list,
 * show, save byte-identical, set --public seen and saved by another user, delete; a qcow2
 * upload stored as raw (qemu-utils); and the `glance` CLI (python3-glanceclient), which
 * fetches schemas and filters its requests through them. Missing tools skip loudly, and fail
 * under CI=true.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { runTool } from "../../engine/nbd/testing/require-tool.ts";
import { servePithos, type ServedPithos } from "../pithos/testing/server.ts";
import { requireTools } from "../../engine/nbd/testing/require-tool.ts";

const haveTools = requireTools("openstack", "glance", "qemu-img", "qemu-io");
const describeWithTools = haveTools ? describeEachEngine : (title: string) => describe.skip(title, () => {});

/** Each `openstack` command authenticates and starts Python afresh: 3–6 s on a loaded 2-core machine. */
const clientTestTimeoutMs = 300_000;

interface ImageRow {
  ID: string;
  Name: string;
  Status: string;
}

describeWithTools("the openstack and glance clients against the image service", (databases) => {
  let served: ServedPithos;
  let dir: string;
  // Debian's client and its Python: /usr/bin first; no clouds.yaml or OS_* from the developer's shell.
  const env = { PATH: `/usr/bin:${process.env["PATH"] ?? ""}`, HOME: "", OS_CLOUD: "", OS_AUTH_URL: "" };

  const openstack = async (user: string, ...args: string[]): Promise<string> => {
    const auth = [
      "--os-auth-url", `${served.baseUrl}/identity/v3`, "--os-identity-api-version", "3",
      "--os-username", user, "--os-password", `${user}-secret`, "--os-project-name", user,
      "--os-user-domain-name", "Default", "--os-project-domain-name", "Default",
    ];
    const result = await runTool("openstack", [...auth, ...args], { cwd: dir, env: { ...env, HOME: dir }, timeoutMs: 120_000 });
    if (result.code !== 0) throw new Error(`openstack ${args.join(" ")} exited ${result.code}\n${result.stderr}\n${result.stdout}`);
    return result.stdout;
  };
  const glance = async (user: string, ...args: string[]): Promise<string> => {
    const auth = [
      "--os-auth-url", `${served.baseUrl}/identity/v3`, "--os-username", user, "--os-password", `${user}-secret`,
      "--os-project-name", user, "--os-user-domain-name", "Default", "--os-project-domain-name", "Default",
    ];
    const result = await runTool("glance", [...auth, ...args], { cwd: dir, env: { ...env, HOME: dir }, timeoutMs: 120_000 });
    if (result.code !== 0 || result.stderr.includes("falling back to v1")) throw new Error(`glance ${args.join(" ")} exited ${result.code}\n${result.stderr}\n${result.stdout}`);
    return result.stdout;
  };
  const json = async <T>(user: string, ...args: string[]): Promise<T> => JSON.parse(await openstack(user, ...args, "-f", "json")) as T;
  const tool = async (command: string, ...args: string[]): Promise<void> => {
    const result = await runTool(command, args, { cwd: dir, env });
    if (result.code !== 0) throw new Error(`${command} ${args.join(" ")} exited ${result.code}\n${result.stderr}`);
  };
  const md5 = async (path: string) => createHash("md5").update(await readFile(join(dir, path))).digest("hex");

  beforeAll(async () => {
    served = await servePithos(await databases.open(), { blockSizeBytes: 64 * 1024 });
    await served.addUser("alice", "alice-secret");
    await served.addUser("bob", "bob-secret");
    dir = await mkdtemp(join(tmpdir(), "okeanos-plankton-clients-"));
  });

  afterAll(async () => {
    await served?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("image create --file, list, show, save (byte-identical), set --public for another user, delete", async () => {
    // Random blocks, a run of zeros and a partial last block.
    const disk = Buffer.concat([randomBytes(300 * 1024), Buffer.alloc(256 * 1024), randomBytes(1000)]);
    await writeFile(join(dir, "disk.raw"), disk);

    const created = await json<Record<string, unknown>>("alice", "image", "create", "--file", "disk.raw", "--disk-format", "raw", "--container-format", "bare", "debian-test");
    const id = created["id"] as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const list = await json<ImageRow[]>("alice", "image", "list");
    expect(list).toContainEqual({ ID: id, Name: "debian-test", Status: "active" });
    const shown = await json<Record<string, unknown>>("alice", "image", "show", "debian-test");
    expect(shown).toMatchObject({ id, name: "debian-test", status: "active", size: disk.length, checksum: await md5("disk.raw"), disk_format: "raw", visibility: "private" });

    await openstack("alice", "image", "save", "--file", "out.raw", id);
    await tool("cmp", "disk.raw", "out.raw");

    // bob sees nothing of alice's until she publishes it.
    expect((await json<ImageRow[]>("bob", "image", "list")).map((row) => row.ID)).not.toContain(id);
    await openstack("alice", "image", "set", "--public", id);
    expect(await json<ImageRow[]>("bob", "image", "list")).toContainEqual({ ID: id, Name: "debian-test", Status: "active" });
    await openstack("bob", "image", "save", "--file", "bob.raw", "debian-test");
    await tool("cmp", "disk.raw", "bob.raw");

    await openstack("alice", "image", "delete", "debian-test");
    expect((await json<ImageRow[]>("alice", "image", "list")).map((row) => row.ID)).not.toContain(id);
    expect((await json<ImageRow[]>("bob", "image", "list")).map((row) => row.ID)).not.toContain(id);
  }, clientTestTimeoutMs);

  it("a qcow2 upload is stored as raw: what image save returns is qemu-img convert -O raw of it", async () => {
    await tool("qemu-img", "create", "-q", "-f", "qcow2", "disk.qcow2", "4M");
    await tool("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 512k 128k", "-c", "write -P 0x17 3M 64k", "disk.qcow2");
    await tool("qemu-img", "convert", "-f", "qcow2", "-O", "raw", "disk.qcow2", "expected.raw");

    const created = await json<Record<string, unknown>>("alice", "image", "create", "--file", "disk.qcow2", "--disk-format", "qcow2", "--container-format", "bare", "from-qcow2");
    const shown = await json<Record<string, unknown>>("alice", "image", "show", created["id"] as string);
    expect(shown).toMatchObject({ status: "active", disk_format: "raw", size: 4 * 1024 * 1024, checksum: await md5("expected.raw") });
    await openstack("alice", "image", "save", "--file", "saved.raw", "from-qcow2");
    await tool("cmp", "expected.raw", "saved.raw");
    await openstack("alice", "image", "delete", "from-qcow2");
  }, clientTestTimeoutMs);

  it("the glance CLI: image-create with a property, image-download byte-identical (checksum verified), image-update, image-delete", async () => {
    await writeFile(join(dir, "g.raw"), randomBytes(200 * 1024 + 3));
    const created = await glance("alice", "image-create", "--name", "via-glance", "--disk-format", "raw", "--container-format", "bare", "--property", "os_distro=debian", "--file", "g.raw");
    expect(created).toMatch(/\| status\s+\| active/);
    expect(created).toMatch(/\| os_distro\s+\| debian/);
    const id = /\| id\s+\| ([0-9a-f-]{36})/.exec(created)?.[1] as string;
    await glance("alice", "image-download", "--file", "g.out", id);
    await tool("cmp", "g.raw", "g.out");
    expect(await glance("alice", "image-update", "--name", "renamed", "--remove-property", "os_distro", id)).toMatch(/\| name\s+\| renamed/);
    expect(await glance("alice", "image-list")).toContain(id);
    await glance("alice", "image-delete", id);
    expect(await glance("alice", "image-list")).not.toContain(id);
  }, clientTestTimeoutMs);
});
