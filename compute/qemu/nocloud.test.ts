/**
 * The NoCloud seed: the files' content (YAML that PyYAML — cloud-init's parser — reads back
 * exactly, whatever the hostname holds), and the ISO genisoimage makes, read with isoinfo: the
 * `cidata` label, Joliet and Rock Ridge, and each file's bytes. Needs genisoimage (isoinfo is
 * in the same package): skipped with a loud warning without it, failed under CI=true.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireTools } from "../../engine/nbd/testing/require-tool.ts";
import { isComputeError } from "../errors.ts";
import type { NoCloudSeed } from "../driver.ts";
import { seedFiles, writeSeedIso, yamlString } from "./nocloud.ts";

const execFileAsync = promisify(execFile);
const haveTools = requireTools("genisoimage", "isoinfo");

const keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 alice@example", "ssh-rsa AAAAB3NzaC1yc2E bob"];
/** Everything a naive YAML writer gets wrong: quotes, a colon-space, a comment sign, a newline, C1 controls, U+2028, non-ASCII. */
const awkward = 'vm: "1" #x\n\u0085\u0080\u2028é€😀\t\\ - [a]';

/** PyYAML (python3-yaml), which cloud-init parses meta-data and cloud-config with. */
async function loadYaml(text: string): Promise<unknown> {
  const script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin.buffer.read())))";
  const child = execFileAsync("python3", ["-c", script]);
  child.child.stdin?.end(text);
  return JSON.parse((await child).stdout);
}

async function pyYamlAvailable(): Promise<boolean> {
  const found = await execFileAsync("python3", ["-c", "import yaml"]).then(() => true, () => false);
  if (!found) {
    if (process.env["CI"] === "true") throw new Error("python3-yaml is missing; CI=true, so this fails instead of skipping");
    process.stderr.write("\n!! SKIPPING the PyYAML round trip: apt-get install python3-yaml\n\n");
  }
  return found;
}

describe("seedFiles", () => {
  const seed: NoCloudSeed = { instanceId: "0b9f7d1e-5a3c-4c2e-9d52-1f7f0a6b2c3d", hostname: "vm1", sshAuthorizedKeys: keys };

  it("without user data: meta-data with the keys, and a cloud-config with hostname and keys", () => {
    const files = seedFiles(seed);
    expect([...files.keys()]).toEqual(["meta-data", "user-data"]);
    expect(files.get("meta-data")?.toString()).toBe(
      `instance-id: "${seed.instanceId}"\nlocal-hostname: "vm1"\npublic-keys:\n  - "${keys[0]}"\n  - "${keys[1]}"\n`,
    );
    expect(files.get("user-data")?.toString()).toBe(`#cloud-config\nhostname: "vm1"\nssh_authorized_keys:\n  - "${keys[0]}"\n  - "${keys[1]}"\n`);
  });

  it("with user data: the user's bytes untouched, the keys still in meta-data; network-config when given", () => {
    const userData = Buffer.from([0x23, 0x21, 0x2f, 0x62, 0x69, 0x6e, 0x2f, 0x73, 0x68, 0x0a, 0xff, 0x00]);
    const files = seedFiles({ ...seed, userData, networkConfig: "version: 2\n" });
    expect(files.get("user-data")).toEqual(userData);
    expect(files.get("meta-data")?.toString()).toContain(`public-keys:\n  - "${keys[0]}"`);
    expect(files.get("network-config")?.toString()).toBe("version: 2\n");
  });

  it("without keys: no public-keys and no ssh_authorized_keys", () => {
    const files = seedFiles({ ...seed, sshAuthorizedKeys: [" ", ""] });
    expect(files.get("meta-data")?.toString()).not.toContain("public-keys");
    expect(files.get("user-data")?.toString()).toBe('#cloud-config\nhostname: "vm1"\n');
  });

  it("quotes values so that PyYAML reads back exactly what was given", async () => {
    expect(yamlString("\u0085")).toBe('"\\u0085"');
    if (!(await pyYamlAvailable())) return;
    const files = seedFiles({ instanceId: awkward, hostname: `${awkward}2`, sshAuthorizedKeys: [awkward] });
    expect(await loadYaml(files.get("meta-data")?.toString() as string)).toEqual({
      "instance-id": awkward,
      "local-hostname": `${awkward}2`,
      "public-keys": [awkward],
    });
    expect(await loadYaml(files.get("user-data")?.toString() as string)).toEqual({ hostname: `${awkward}2`, ssh_authorized_keys: [awkward] });
  });
});

describe.skipIf(!haveTools)("writeSeedIso (genisoimage, read with isoinfo)", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos nocloud=1 "));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function isoinfo(...args: string[]): Promise<string> {
    return (await execFileAsync("isoinfo", args, { encoding: "utf8", maxBuffer: 1024 * 1024 })).stdout;
  }

  it("makes a cidata ISO with Joliet and Rock Ridge holding the files, and cleans up after itself", async () => {
    const isoPath = join(dir, "seed.iso");
    const seed: NoCloudSeed = {
      instanceId: "i-1",
      hostname: "vm1",
      sshAuthorizedKeys: keys,
      userData: Buffer.from("#!/bin/sh\necho hello\n"),
      networkConfig: "version: 2\nethernets: {}\n",
    };
    await writeSeedIso(seed, isoPath);
    const descriptor = await isoinfo("-d", "-i", isoPath);
    expect(descriptor).toMatch(/^Volume id: cidata$/m);
    expect(descriptor).toMatch(/^Joliet with UCS level 3 found$/m);
    expect(descriptor).toMatch(/^Rock Ridge signatures version \d+ found$/m);
    expect((await isoinfo("-R", "-f", "-i", isoPath)).split("\n").filter((line) => line !== "").sort()).toEqual(["/meta-data", "/network-config", "/user-data"]);
    expect((await isoinfo("-J", "-f", "-i", isoPath)).split("\n").filter((line) => line !== "").sort()).toEqual(["/meta-data", "/network-config", "/user-data"]);
    for (const [name, content] of seedFiles(seed)) {
      expect(await isoinfo("-R", "-x", `/${name}`, "-i", isoPath), name).toBe(content.toString("utf8"));
    }
    expect(await readdir(dir)).toEqual(["seed.iso"]);

    // Written again (a restart): replaced whole.
    await writeSeedIso({ ...seed, hostname: "vm2", userData: undefined, networkConfig: undefined }, isoPath);
    expect(await isoinfo("-R", "-x", "/meta-data", "-i", isoPath)).toContain('local-hostname: "vm2"');
    expect((await isoinfo("-R", "-f", "-i", isoPath)).trim().split("\n").sort()).toEqual(["/meta-data", "/user-data"]);
  });

  it("names the Debian package when genisoimage is missing", async () => {
    const error = await writeSeedIso({ instanceId: "i", hostname: "h", sshAuthorizedKeys: [] }, join(dir, "other.iso"), { genisoimage: "/nonexistent/genisoimage" }).catch(
      (caught: unknown) => caught,
    );
    expect(isComputeError(error, "EHYPERVISOR")).toBe(true);
    expect((error as Error).message).toMatch(/apt-get install genisoimage/);
  });
});
