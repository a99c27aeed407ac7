/**
 * An in-memory HypervisorDriver for the service's tests: it keeps each instance's spec, power
 * state and the disks plugged into it while it runs (those of the spec at start, then hot-plugs
 * and unplugs), records every call, and can be told to fail a method or to hang in it (a
 * never-settling promise: the "process killed mid-job" of the crash tests).
 */
import type { AttachedDisk, HypervisorDriver, InstanceSpec, InstanceStatus, PowerState, VncEndpoint } from "../driver.ts";
import { ComputeError } from "../errors.ts";

type Method = "start" | "stop" | "reboot" | "destroy" | "status" | "list" | "consoleLog" | "vnc" | "attachDisk" | "detachDisk";

export interface FakeInstance {
  spec: InstanceSpec;
  power: PowerState;
  boots: number;
  /** The disks the running instance has, by disk id (empty while it is shut down). */
  disks?: Map<string, AttachedDisk>;
}

const pluggedAtStart = (spec: InstanceSpec) => new Map(spec.extraDisks.map((disk) => [disk.id, disk]));

export class FakeDriver implements HypervisorDriver {
  readonly kind = "fake";
  readonly instances = new Map<string, FakeInstance>();
  /** Every call: method and instance id, in order. */
  readonly calls: Array<{ method: Method; id?: string }> = [];
  readonly #failures = new Map<Method, Error>();
  readonly #hangs = new Set<Method>();
  readonly #gates = new Map<Method, { entered: { resolve: () => void }; released: { promise: Promise<void> } }>();
  /** Resolves the first time a hanging method is entered. */
  #hung: { promise: Promise<void>; resolve: () => void } = withResolvers();

  /** The next calls of `method` throw `error` until cleared (`fail(method, null)`). */
  fail(method: Method, error: Error | null = new ComputeError("EHYPERVISOR", `fake ${method} failure`)): void {
    if (error === null) this.#failures.delete(method);
    else this.#failures.set(method, error);
  }

  /** Calls of `method` never settle; `hung()` resolves when the first one arrives. */
  hang(method: Method): void {
    this.#hangs.add(method);
  }

  hung(): Promise<void> {
    return this.#hung.promise;
  }

  /** The next call of `method` waits until released; `entered` resolves when it arrives. */
  gate(method: Method): { entered: Promise<void>; release: () => void } {
    const entered = withResolvers();
    const released = withResolvers();
    this.#gates.set(method, { entered, released });
    return { entered: entered.promise, release: released.resolve };
  }

  callsOf(method: Method): string[] {
    return this.calls.filter((call) => call.method === method).map((call) => call.id ?? "");
  }

  async start(spec: InstanceSpec): Promise<void> {
    await this.#enter("start", spec.id);
    const instance = this.instances.get(spec.id);
    if (instance?.power === "running") return;
    this.instances.set(spec.id, { spec, power: "running", boots: (instance?.boots ?? 0) + 1, disks: pluggedAtStart(spec) });
  }

  async stop(id: string): Promise<void> {
    await this.#enter("stop", id);
    const instance = this.instances.get(id);
    if (instance !== undefined) {
      instance.power = "shutdown";
      instance.disks = new Map();
    }
  }

  async reboot(spec: InstanceSpec, kind: "soft" | "hard"): Promise<void> {
    await this.#enter("reboot", spec.id);
    const instance = this.instances.get(spec.id);
    // A hard reboot resets the same machine (hot-plugged disks stay); a soft one starts anew.
    const disks = kind === "hard" && instance?.power === "running" ? (instance.disks ?? new Map()) : pluggedAtStart(spec);
    this.instances.set(spec.id, { spec, power: "running", boots: (instance?.boots ?? 0) + 1, disks });
  }

  async destroy(id: string): Promise<void> {
    await this.#enter("destroy", id);
    this.instances.delete(id);
  }

  async status(id: string): Promise<InstanceStatus> {
    await this.#enter("status", id);
    const instance = this.instances.get(id);
    return { power: instance?.power ?? "shutdown" };
  }

  async list(): Promise<string[]> {
    await this.#enter("list");
    return [...this.instances.keys()];
  }

  async consoleLog(id: string, bytesMax: number): Promise<string> {
    await this.#enter("consoleLog", id);
    return `boot of ${id}\nlogin:\n`.slice(-bytesMax);
  }

  async vnc(id: string): Promise<VncEndpoint> {
    await this.#enter("vnc", id);
    return { address: { kind: "unix", path: `/fake/${id}.vnc` }, password: "secret12" };
  }

  async attachDisk(id: string, disk: AttachedDisk): Promise<void> {
    await this.#enter("attachDisk", id);
    const instance = this.instances.get(id);
    if (instance?.power === "running") (instance.disks ??= new Map()).set(disk.id, disk);
  }

  async detachDisk(id: string, diskId: string): Promise<void> {
    await this.#enter("detachDisk", id);
    const instance = this.instances.get(id);
    if (instance?.power === "running") instance.disks?.delete(diskId);
  }

  /** The disk ids plugged into the running instance, in plug order. */
  disksOf(id: string): string[] {
    return [...(this.instances.get(id)?.disks?.keys() ?? [])];
  }

  async #enter(method: Method, id?: string): Promise<void> {
    this.calls.push({ method, ...(id !== undefined && { id }) });
    const failure = this.#failures.get(method);
    if (failure !== undefined) throw failure;
    const gate = this.#gates.get(method);
    if (gate !== undefined) {
      this.#gates.delete(method);
      gate.entered.resolve();
      await gate.released.promise;
    }
    if (this.#hangs.has(method)) {
      this.#hung.resolve();
      await new Promise<never>(() => {});
    }
  }
}

function withResolvers(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}
