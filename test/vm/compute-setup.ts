/**
 * What the compute end-to-end tests share (compute.test.ts, compute-crash.test.ts): a scratch
 * directory holding a file store, a SQLite database and a compute directory; alice with a
 * password and a compute.cpu limit; `okeanos serve` over them as a child process that can be
 * stopped (SIGTERM), killed (SIGKILL) and started again on the same state; the okeanos and
 * openstack clients; alice's quota; the guest's kernel, initramfs and ext4 root uploaded as
 * Plankton images; and, after a failure, every QEMU process a test left, killed by its pid file.
 *
 *   <dir>/store            file store (1 MiB blocks)      <dir>/okeanos.db   the database
 *   <dir>/compute/         --compute-dir: instances/<server id>/qemu.pid…, nbd.sock
 */
import { execFile } from "node:child_process";
import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, open, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { instancePid } from "../../compute/qemu/process.ts";
import { runCli } from "../../cli/testing/run-cli.ts";
import { startServe, type ServeProcess as ServeChild } from "../../cli/testing/serve-process.ts";
import { buildGuest, hostTools, missingTools, runTool, type Guest } from "./harness.ts";

export const ci = process.env["CI"] === "true";
// Debian's client and its Python first: no virtualenv's openstack.
const clientPath = `/usr/bin:${process.env["PATH"] ?? ""}`;
/** The host tools the compute tests need that are not here (test/vm/README.md). */
export const computeMissing = missingTools([...hostTools, "genisoimage"]).concat(missingTools(["openstack"]).length > 0 ? ["openstack"] : []);
export const computeInstall = "apt-get install qemu-system-x86 e2fsprogs genisoimage python3-openstackclient (test/vm/README.md)";

/** True when the test must be skipped (tools missing, not CI); says so once. CI=true never skips: beforeAll fails. */
export function skipComputeTest(name: string): boolean {
  if (computeMissing.length === 0 || ci) return false;
  console.warn(`\n*** test/vm/${name} SKIPPED: ${computeMissing.join(", ")} not found. To run it: ${computeInstall} ***\n`);
  return true;
}

/** The root file system: big enough for ext4's journal, 64 blocks of 1 MiB. */
export const rootBytes = 64 * 1024 * 1024;
const blockSizeArgument = "1M";
/** An `openstack` command: Python start-up, authentication, the request (and --wait's 5 s polls). */
const clientTimeoutMs = 300_000;

/** An OpenSSH ed25519 public key line: "ssh-ed25519", base64 of two SSH strings (RFC 8709 section 4), a comment. */
export function sshPublicKey(comment: string): string {
  const { publicKey } = generateKeyPairSync("ed25519");
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x as string, "base64url");
  const sshString = (data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    return Buffer.concat([length, data]);
  };
  return `ssh-ed25519 ${Buffer.concat([sshString(Buffer.from("ssh-ed25519")), sshString(raw)]).toString("base64")} ${comment}`;
}

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ── okeanos serve as a child process ─────────────────────────────────────────────────────

/**
 * `okeanos --store file:STORE --json serve --port 0 --compute-dir DIR` with OKEANOS_DATABASE,
 * through cli/testing/serve-process.ts (which gives the pid and SIGKILL the crash test needs).
 */
function spawnServe(bed: { dir: string; storeDir: string; database: string; computeDir: string }, options: { logLevel: string; env: Record<string, string> }): Promise<ServeChild> {
  // The servers' NBD socket named (where --compute-dir would put it): no NBD TCP port to collide on.
  return startServe(["--port", "0", "--compute-dir", bed.computeDir, "--nbd-socket", join(bed.computeDir, "nbd.sock"), "--log-level", options.logLevel], {
    cwd: bed.dir,
    env: { OKEANOS_DATABASE: bed.database, ...options.env },
    globalArgs: ["--store", `file:${bed.storeDir}`],
  });
}

function serveText(serve: ServeChild): string {
  const { stdout, stderr } = serve.output();
  return `${stdout}\n${stderr}`;
}

// ── the test bed ─────────────────────────────────────────────────────────────────────────

export interface ComputeBed {
  dir: string;
  storeDir: string;
  database: string;
  computeDir: string;
  /** The QEMU driver's state: one directory per server (compute/qemu/layout.ts). */
  instancesDir: string;
  guest: Guest;
  password: string;
  aliceUuid: string;
  /** The serving process now (restart() replaces it). */
  serve: ServeChild;
  /** Starts `okeanos serve` again on the same store, database and compute directory (the current one must have exited). */
  restart(): Promise<ServeChild>;
  /** The output of every `okeanos serve` this bed started, oldest first (for a failure's message). */
  serveLog(): string;
  /** `okeanos …` against the bed's store, database and compute directory; its stdout (a non-zero exit throws). */
  okeanos(...args: string[]): Promise<string>;
  /** `openstack …` as alice against the serving process: its exit code and output. */
  openstackRun(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  openstack(...args: string[]): Promise<string>;
  json<T = Record<string, unknown>>(...args: string[]): Promise<T>;
  /** alice's usage and pending reservations of each quota resource (`okeanos quota show`). */
  quotas(): Promise<Record<string, { usage: number; pendingIncrease: number; pendingDecrease: number }>>;
  usage(): Promise<Record<string, number>>;
  /** Kills every QEMU process under instancesDir (by pid file), stops serve, removes the directory. */
  cleanUp(): Promise<void>;
}

export interface ComputeBedOptions {
  /** mkdtemp prefix. */
  name: string;
  /** alice's compute.cpu limit. */
  cpuLimit: number;
  /** pino's level for serve's log (kept in memory, shown when a test fails). */
  logLevel?: string;
  /** More environment for every `okeanos serve` started, given the bed's directory. */
  serveEnv?: (dir: string) => Record<string, string>;
}

/** The bed, with `okeanos serve` running compute (its banner names the Nova endpoint). */
export async function setUpCompute(options: ComputeBedOptions): Promise<ComputeBed> {
  if (computeMissing.length > 0) throw new Error(`CI=true and host tools are missing: ${computeMissing.join(", ")}. ${computeInstall}`);
  const dir = await mkdtemp(join(tmpdir(), `okeanos-${options.name}-`));
  try {
    return await setUpIn(dir, options);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

async function setUpIn(dir: string, options: ComputeBedOptions): Promise<ComputeBed> {
  const storeDir = join(dir, "store");
  const database = `sqlite:${join(dir, "okeanos.db")}`;
  const computeDir = join(dir, "compute");
  const paths = { dir, storeDir, database, computeDir };
  const password = `pw-${randomBytes(6).toString("hex")}`;
  const guest = await buildGuest();

  const okeanos = async (...args: string[]): Promise<string> => {
    const result = await runCli(["--store", `file:${storeDir}`, ...args], { env: { OKEANOS_DATABASE: database, OKEANOS_COMPUTE_DIR: computeDir }, cwd: dir });
    if (result.code !== 0) throw new Error(`okeanos ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
    return result.stdout;
  };
  const initialised = await runCli(["--store", `file:${storeDir}`, "store", "init", "--block-size", blockSizeArgument], { cwd: dir });
  expect(initialised.code, initialised.stderr).toBe(0);
  const created = JSON.parse(await okeanos("--json", "user", "create", "alice", "--password", password)) as { uuid: string };
  await okeanos("quota", "set", "alice", "compute.cpu", String(options.cpuLimit));

  const start = async (): Promise<ServeChild> => {
    const child = await spawnServe(paths, { logLevel: options.logLevel ?? "warn", env: options.serveEnv?.(dir) ?? {} });
    if (typeof child.banner.compute !== "string") {
      await child.stop();
      throw new Error(`okeanos serve runs no compute service (banner: ${JSON.stringify(child.banner)}; ${JSON.stringify(child.output())})`);
    }
    return child;
  };

  const earlierOutput: string[] = [];
  const bed: ComputeBed = {
    ...paths,
    instancesDir: join(computeDir, "instances"),
    guest,
    password,
    aliceUuid: created.uuid,
    serve: await start(),
    async restart() {
      earlierOutput.push(serveText(bed.serve));
      bed.serve = await start();
      return bed.serve;
    },
    serveLog: () => [...earlierOutput, serveText(bed.serve)].map((output, index) => `── okeanos serve #${index + 1}\n${output}`).join("\n"),
    okeanos,
    openstackRun: (...args) =>
      new Promise((resolve) => {
        const auth = [
          "--os-auth-url", `${bed.serve.banner.baseUrl}/identity/v3`, "--os-identity-api-version", "3",
          "--os-username", "alice", "--os-password", password, "--os-project-name", "alice",
          "--os-user-domain-name", "Default", "--os-project-domain-name", "Default",
        ];
        const env = { ...process.env, PATH: clientPath, HOME: dir, OS_CLOUD: "", OS_AUTH_URL: "" };
        execFile("openstack", [...auth, ...args], { cwd: dir, env, timeout: clientTimeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
          resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr: error !== null && stderr === "" ? String(error) : stderr });
        });
      }),
    async openstack(...args) {
      const result = await bed.openstackRun(...args);
      if (result.code !== 0) throw new Error(`openstack ${args.join(" ")} exited ${result.code}\n${result.stderr}\n${result.stdout}`);
      return result.stdout;
    },
    async json<T>(...args: string[]) {
      return JSON.parse(await bed.openstack(...args, "-f", "json")) as T;
    },
    async quotas() {
      type Quota = { resource: string; usage: number; pendingIncrease: number; pendingDecrease: number };
      const { quotas } = JSON.parse(await okeanos("--json", "quota", "show", "alice")) as { quotas: Quota[] };
      return Object.fromEntries(quotas.map(({ resource, usage, pendingIncrease, pendingDecrease }) => [resource, { usage, pendingIncrease, pendingDecrease }]));
    },
    async usage() {
      return Object.fromEntries(Object.entries(await bed.quotas()).map(([resource, quota]) => [resource, quota.usage]));
    },
    async cleanUp() {
      await killInstances(bed.instancesDir);
      await bed.serve.kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return bed;
}

/**
 * Kills the QEMU of every instance directory under `instancesDir` whose pid file names a live
 * process started with that pid file (compute/qemu/process.ts: never a stranger's pid). QEMU
 * runs -daemonize, so nothing else would stop a server a failed test left behind.
 */
export async function killInstances(instancesDir: string): Promise<void> {
  const ids = await readdir(instancesDir).catch(() => [] as string[]);
  for (const id of ids) {
    const pid = await instancePid(join(instancesDir, id, "qemu.pid"));
    if (pid !== undefined) process.kill(pid, "SIGKILL");
  }
}

// ── the guest as Plankton images ─────────────────────────────────────────────────────────

export interface GuestImages {
  kernel: Record<string, unknown>;
  initrd: Record<string, unknown>;
  root: Record<string, unknown>;
  /** The root image's os_command_line: the guest's `cloud` task (guest-init.sh), with `note`. */
  commandLine: string;
}

/**
 * Uploads the guest with the openstack client: kernel and initramfs as `aki`/`ari` images, an
 * ext4 root made on the host (holding hello.txt) whose kernel_id / ramdisk_id /
 * os_command_line boot the guest's `cloud` task. Returns the images as the client printed
 * them at creation (before the upload: read the status back).
 */
export async function uploadGuestImages(bed: ComputeBed, note: string): Promise<GuestImages> {
  const kernel = await bed.json("image", "create", "--disk-format", "aki", "--container-format", "aki", "--file", bed.guest.kernelPath, "guest-kernel");
  const initrd = await bed.json("image", "create", "--disk-format", "ari", "--container-format", "ari", "--file", bed.guest.initrdPath, "guest-initrd");
  const source = join(bed.dir, "root-source");
  await mkdir(source);
  await writeFile(join(source, "hello.txt"), "made on the host\n");
  const rootPath = join(bed.dir, "root.raw");
  const rootFile = await open(rootPath, "w");
  await rootFile.truncate(rootBytes);
  await rootFile.close();
  await runTool("mkfs.ext4", ["-q", "-F", "-L", "root", "-d", source, rootPath]);
  // What the guest's /init needs on its command line (guest-init.sh; harness.ts startGuest).
  const commandLine = `console=ttyS0 loglevel=5 panic=-1 okeanos.task=cloud okeanos.note=${note}`;
  const root = await bed.json(
    "image", "create", "--disk-format", "raw", "--container-format", "bare", "--file", rootPath,
    "--property", `kernel_id=${String(kernel["id"])}`, "--property", `ramdisk_id=${String(initrd["id"])}`,
    "--property", `os_command_line=${commandLine}`, "guest-root",
  );
  await rm(rootPath, { force: true });
  return { kernel, initrd, root, commandLine };
}
