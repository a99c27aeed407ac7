/**
 * The cloud-init NoCloud seed: an ISO 9660 image labelled `cidata` holding `meta-data`,
 * `user-data` and, when given, `network-config` (cloud-init's doc/rtd/reference/datasources/
 * nocloud.rst: "a vfat or iso9660 filesystem … with a filesystem volume label of cidata"),
 * made with genisoimage with Joliet and Rock Ridge, as cloud-localds does.
 *
 * meta-data carries instance-id, local-hostname and, when there are keys, `public-keys`
 * (cloud-init's NoCloud reads them from meta-data, so they reach the guest even when the
 * user's own user_data replaces ours). Without user data, user-data is a `#cloud-config`
 * with the hostname and the keys; cloud-init merges both key lists into one set.
 */
import { execFile } from "node:child_process";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ComputeError } from "../errors.ts";
import type { NoCloudSeed } from "../driver.ts";

/** genisoimage on a few KiB of files takes milliseconds; allow a loaded host. */
export const genisoimageTimeoutMs = 30_000;
/** The volume label cloud-init's NoCloud looks for (case-insensitive, "cidata" by convention). */
export const seedVolumeId = "cidata";

/**
 * A YAML double-quoted scalar. A JSON string is one (YAML 1.2 is a superset of JSON, and
 * PyYAML's double-quoted style takes JSON's escapes), except that PyYAML refuses some
 * characters JSON leaves raw — C1 controls, DEL, BOM, the non-characters U+FFFE/U+FFFF — and
 * treats U+2028/U+2029 as line breaks: those are escaped as \uXXXX too.
 */
export function yamlString(value: string): string {
  return JSON.stringify(value).replace(/[\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function yamlList(items: readonly string[]): string {
  return items.map((item) => `  - ${yamlString(item)}\n`).join("");
}

/** The seed's files by name, exactly as they go on the ISO. */
export function seedFiles(seed: NoCloudSeed): Map<string, Buffer> {
  const keys = seed.sshAuthorizedKeys.map((key) => key.trim()).filter((key) => key !== "");
  let metaData = `instance-id: ${yamlString(seed.instanceId)}\nlocal-hostname: ${yamlString(seed.hostname)}\n`;
  if (keys.length > 0) metaData += `public-keys:\n${yamlList(keys)}`;
  const userData =
    seed.userData ??
    Buffer.from(`#cloud-config\nhostname: ${yamlString(seed.hostname)}\n${keys.length > 0 ? `ssh_authorized_keys:\n${yamlList(keys)}` : ""}`, "utf8");
  const files = new Map<string, Buffer>([
    ["meta-data", Buffer.from(metaData, "utf8")],
    ["user-data", userData],
  ]);
  if (seed.networkConfig !== undefined) files.set("network-config", Buffer.from(seed.networkConfig, "utf8"));
  return files;
}

/**
 * Writes the seed ISO at `isoPath` (atomically: a temporary file renamed over it). The files
 * are staged in `<isoPath>.d/`, next to the ISO, and removed afterwards.
 */
export async function writeSeedIso(seed: NoCloudSeed, isoPath: string, options: { genisoimage?: string } = {}): Promise<void> {
  const staging = `${isoPath}.d`;
  const temporary = `${isoPath}.tmp`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    const files = seedFiles(seed);
    for (const [name, content] of files) await writeFile(join(staging, name), content);
    // genisoimage -graft-points: "=" separates the ISO path from the file; a backslash escapes "=" and itself.
    const graftPoints = [...files.keys()].map((name) => `${name}=${join(staging, name).replace(/[\\=]/g, (char) => `\\${char}`)}`);
    await runGenisoimage(options.genisoimage ?? "genisoimage", [
      ...["-output", temporary, "-volid", seedVolumeId, "-joliet", "-rock", "-input-charset", "utf-8", "-quiet"],
      ...["-graft-points", ...graftPoints],
    ]);
    await rename(temporary, isoPath);
  } finally {
    await rm(staging, { recursive: true, force: true });
    await rm(temporary, { force: true });
  }
}

function runGenisoimage(binary: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: genisoimageTimeoutMs }, (error, _stdout, stderr) => {
      if (error === null) return resolve();
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        return reject(new ComputeError("EHYPERVISOR", `${binary} not found: the NoCloud seed needs it (apt-get install genisoimage)`, { cause: error }));
      }
      reject(new ComputeError("EHYPERVISOR", `${binary} failed making the NoCloud seed: ${stderr.trim() || error.message}`, { cause: error }));
    });
  });
}
