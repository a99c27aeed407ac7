/**
 * The QEMU command line without running QEMU: disk order and options, QemuOpts escaping,
 * kernel boot, and the refusals (bad sizes, relative or over-long NBD socket paths, bad ids).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { InstanceSpec } from "../driver.ts";
import { isComputeError } from "../errors.ts";
import { extraDisksMax, optionValue, qemuArgs } from "./args.ts";
import { instanceLayout, socketPathBytesMax } from "./layout.ts";
import { tail } from "./process.ts";

const id = "0b9f7d1e-5a3c-4c2e-9d52-1f7f0a6b2c3d";
const layout = instanceLayout("/var/lib/okeanos/compute", id);
const host = { accel: "tcg", nbdReconnectDelaySeconds: 60 } as const;
const spec: InstanceSpec = {
  id,
  name: "web,1",
  vcpus: 2,
  ramMiB: 512,
  rootDisk: { socketPath: "/run/okeanos/nbd.sock", exportName: "server-0b9f7d1e-5a3c-4c2e-9d52-1f7f0a6b2c3d" },
  extraDisks: [
    { socketPath: "/run/okeanos/nbd.sock", exportName: "data,1", readOnly: true, id: "7f3e2a10-1b2c-4d5e-8f90-a1b2c3d4e5f6", serial: "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e", device: "/dev/vdc" },
    { socketPath: "/run/okeanos/nbd.sock", exportName: "logs", id: "aa11bb22-cc33-4d44-8e55-ff6677889900", serial: "logs,volume", device: "/dev/vde" },
  ],
  seed: { instanceId: id, hostname: "web1", sshAuthorizedKeys: [] },
};

/** The values following each occurrence of `option`. */
function valuesOf(args: string[], option: string): string[] {
  return args.flatMap((arg, index) => (arg === option ? [args[index + 1] as string] : []));
}

describe("qemuArgs", () => {
  it("puts root, seed and attached volumes in order: drives on virtio-blk, volumes as named nodes in their device's slot", () => {
    const args = qemuArgs(spec, layout, host);
    const drives = valuesOf(args, "-drive");
    expect(drives).toEqual([
      "if=none,id=root,driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=/run/okeanos/nbd.sock," +
        `file.export=server-${id},file.reconnect-delay=60,cache=writeback,discard=unmap`,
      `if=none,id=seed,driver=raw,file.driver=file,file.filename=${layout.seedIso},read-only=on`,
    ]);
    // -blockdev's JSON form: what blockdev-add takes (disks.ts), no QemuOpts escaping.
    expect(valuesOf(args, "-blockdev").map((text) => JSON.parse(text) as unknown)).toEqual([
      {
        driver: "raw",
        "node-name": "vol-7f3e2a101b2c4d5e8f90a1b2",
        discard: "unmap",
        cache: { direct: false, "no-flush": false },
        "read-only": true,
        file: { driver: "nbd", server: { type: "unix", path: "/run/okeanos/nbd.sock" }, export: "data,1", "reconnect-delay": 60 },
      },
      {
        driver: "raw",
        "node-name": "vol-aa11bb22cc334d448e55ff66",
        discard: "unmap",
        cache: { direct: false, "no-flush": false },
        "read-only": false,
        file: { driver: "nbd", server: { type: "unix", path: "/run/okeanos/nbd.sock" }, export: "logs", "reconnect-delay": 60 },
      },
    ]);
    expect(valuesOf(args, "-device")).toEqual([
      "virtio-rng-pci",
      "virtio-blk-pci,drive=root,serial=server-0b9f7d1e-5a3c,bootindex=1",
      "virtio-blk-pci,drive=seed,serial=cidata",
      // The serial is the volume id cut to virtio's 20 bytes; vdc is slot 6, vde slot 8.
      "virtio-blk-pci,id=disk-7f3e2a101b2c4d5e8f90a1b2,drive=vol-7f3e2a101b2c4d5e8f90a1b2,serial=0c1d2e3f-4a5b-4c6d-8,write-cache=on,bus=pci.0,addr=0x6",
      "virtio-blk-pci,id=disk-aa11bb22cc334d448e55ff66,drive=vol-aa11bb22cc334d448e55ff66,serial=logs,,volume,write-cache=on,bus=pci.0,addr=0x8",
    ]);
  });

  it("daemonizes with the instance's pid file, sockets and logs; sizes, accelerator and name", () => {
    const args = qemuArgs(spec, layout, host);
    expect(args).toContain("-daemonize");
    expect(valuesOf(args, "-pidfile")).toEqual([layout.pidFile]);
    expect(valuesOf(args, "-qmp")).toEqual([`unix:${layout.qmpSocket},server=on,wait=off`]);
    expect(valuesOf(args, "-vnc")).toEqual([`unix:${layout.vncSocket},password=on`]);
    expect(valuesOf(args, "-chardev")).toEqual([`file,id=console,path=${layout.consoleLog},append=on`]);
    expect(valuesOf(args, "-D")).toEqual([layout.qemuLog]);
    expect(valuesOf(args, "-machine")).toEqual(["accel=tcg"]);
    expect(valuesOf(qemuArgs(spec, layout, { ...host, accel: "kvm" }), "-machine")).toEqual(["accel=kvm:tcg"]);
    expect([valuesOf(args, "-smp"), valuesOf(args, "-m"), valuesOf(args, "-uuid")]).toEqual([["2"], ["512"], [id]]);
    expect(valuesOf(args, "-name")).toEqual(["guest=web,,1,debug-threads=on"]);
    expect(args).not.toContain("-kernel");
  });

  it("boots a kernel directly when asked", () => {
    const args = qemuArgs({ ...spec, kernel: { kernelPath: "/k/vmlinuz", initrdPath: "/k/initrd", commandLine: "console=ttyS0 a,b" } }, layout, host);
    expect([valuesOf(args, "-kernel"), valuesOf(args, "-initrd"), valuesOf(args, "-append")]).toEqual([["/k/vmlinuz"], ["/k/initrd"], ["console=ttyS0 a,b"]]);
  });

  it("refuses bad sizes, too many disks, relative and over-long NBD socket paths", () => {
    const refused = (changed: Partial<InstanceSpec>) => {
      try {
        qemuArgs({ ...spec, ...changed }, layout, host);
      } catch (error) {
        return isComputeError(error) ? error.message : `not a ComputeError: ${String(error)}`;
      }
      return "accepted";
    };
    expect(refused({ vcpus: 0 })).toMatch(/vcpus/);
    expect(refused({ vcpus: 1.5 })).toMatch(/vcpus/);
    expect(refused({ ramMiB: 8 })).toMatch(/ramMiB/);
    const disk = spec.extraDisks[1]!;
    expect(refused({ extraDisks: Array.from({ length: extraDisksMax + 1 }, () => disk) })).toMatch(/at most 16/);
    expect(refused({ extraDisks: [disk, { ...disk, device: "/dev/vdf" }] })).toMatch(/both take vol-aa11/);
    expect(refused({ extraDisks: [disk, { ...disk, id: "bb11bb22-cc33-4d44-8e55-ff6677889900" }] })).toMatch(/both take slot 8/);
    expect(refused({ extraDisks: [{ ...disk, id: "short" }] })).toMatch(/not a disk id/);
    expect(refused({ rootDisk: { socketPath: "nbd.sock", exportName: "x" } })).toMatch(/must be absolute/);
    expect(refused({ rootDisk: { socketPath: `/${"s".repeat(socketPathBytesMax)}`, exportName: "x" } })).toMatch(/over the 107/);
  });

  it("escapes commas QemuOpts-style", () => {
    expect(optionValue("a,b,,c")).toBe("a,,b,,,,c");
  });
});

describe("instanceLayout", () => {
  it("refuses ids that are not one safe path component, and state directories too long for the sockets", () => {
    for (const bad of ["", "..", "a/b", "-x", "a b", "x".repeat(65)]) {
      expect(() => instanceLayout("/state", bad), bad).toThrow(/not an instance id/);
    }
    expect(() => instanceLayout(`/${"d".repeat(70)}`, id)).toThrow(/state directory .* is too long/);
  });
});

describe("tail", () => {
  it("reads the end of a file from a character boundary, and nothing for a missing file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "okeanos-tail-"));
    try {
      const path = join(dir, "log");
      await writeFile(path, "abc€déf");
      expect(await tail(path, 100)).toBe("abc€déf");
      expect(await tail(path, 6)).toBe("déf"); // the cut fell inside "€" (3 bytes)
      expect(await tail(path, 0)).toBe("");
      expect(await tail(join(dir, "absent"), 10)).toBe("");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
