/**
 * An in-memory HypervisorDriver for the service's tests: it keeps each instance's spec and
 * power state, records every call, and can be told to fail a method or to hang in it (a
 * never-settling promise: the "process killed mid-job" of the crash tests).
 */
import type { HypervisorDriver, InstanceSpec, InstanceStatus, PowerState, VncEndpoint } from "../driver.ts";
import { ComputeError } from "../errors.ts";

type Method = "start" | "stop" | "reboot" | "destroy" | "status" | "list" | "consoleLog" | "vnc";

export interface FakeInstance {
  spec: InstanceSpec;
  power: PowerState;
  boots: number;
}

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

  /** The next calls of `method` throw `error` until cleared (`fail(method, undefined)`). */
  fail(method: Method, error: Error | undefined = new ComputeError("EHYPERVISOR", `fake ${method} failure`)): void {
    if (error === undefined) this.#failures.delete(method);
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
    this.instances.set(spec.id, { spec, power: "running", boots: (instance?.boots ?? 0) + 1 });
  }

  async stop(id: string): Promise<void> {
    await this.#enter("stop", id);
    const instance = this.instances.get(id);
    if (instance !== undefined) instance.power = "shutdown";
  }

  async reboot(spec: InstanceSpec, _kind: "soft" | "hard"): Promise<void> {
    await this.#enter("reboot", spec.id);
    const instance = this.instances.get(spec.id);
    this.instances.set(spec.id, { spec, power: "running", boots: (instance?.boots ?? 0) + 1 });
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
