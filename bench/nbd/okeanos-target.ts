/**
 * okeanos as an NBD target: `node cli/okeanos.ts --store file:DIR nbd serve --socket SOCK
 * NAME` on a volume of a fresh file store, driven through the CLI exactly as an operator
 * would. Two variants:
 *
 *   okeanos      the volume is prefilled over NBD, so the working set is private blocks
 *   okeanos-cow  the same, and before every job the server is stopped, the volume is
 *                snapshotted (`okeanos volume snapshot`) and served again: every block is
 *                then shared with the snapshot, and the job's first write to each one
 *                copies it up
 *
 * The server is stopped with SIGTERM (graceful: in-flight requests finish, the volume is
 * flushed and closed, its lock released) before each snapshot. With `cpuProfileDir` set,
 * the next start runs under `node --cpu-prof`, which writes its profile on a clean exit.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { prefill } from "./fio.ts";
import { run } from "./processes.ts";
import { NbdTarget, type TargetLayout } from "./targets.ts";

/** The `okeanos` bin users run (npx okeanos, or installed): it enables the compile cache before any TypeScript loads. */
export const okeanosCliPath = fileURLToPath(new URL("../../bin/okeanos.js", import.meta.url));

const volumeName = "bench";

/**
 * Why okeanos cannot be benchmarked yet, or undefined when `okeanos nbd serve` exists.
 * Commander prints the top-level help (exit 0) for an unknown command, so the check is that
 * the help printed is the serve command's own.
 */
export async function okeanosServeMissing(cliPath = okeanosCliPath): Promise<string | undefined> {
  try {
    const { stdout } = await run(process.execPath, [cliPath, "nbd", "serve", "--help"]);
    if (/Usage: okeanos nbd serve/.test(stdout)) return undefined;
    return "`okeanos nbd serve` does not exist yet (`node cli/okeanos.ts nbd serve --help` prints the top-level help)";
  } catch (error) {
    return `\`node cli/okeanos.ts nbd serve --help\` failed: ${String(error).split("\n")[0]}`;
  }
}

export interface OkeanosTargetOptions {
  copyOnWrite: boolean;
  /**
   * Another checkout's CLI (OKEANOS_BENCH_NBD_BASELINE): the target is then named
   * "okeanos-base" and serves with that checkout's code, for an A/B of a change in one run.
   */
  baselineCliPath?: string;
}

export class OkeanosTarget extends NbdTarget {
  readonly name: string;
  readonly copyOnWrite: boolean;
  readonly storeUri: string;
  readonly #cliPath: string;
  /** When set, the next start runs under `node --cpu-prof` writing into this directory. */
  cpuProfileDir: string | undefined;
  #snapshots = 0;

  constructor(layout: TargetLayout, options: OkeanosTargetOptions) {
    super(layout);
    this.copyOnWrite = options.copyOnWrite;
    this.#cliPath = options.baselineCliPath ?? okeanosCliPath;
    this.name = (options.copyOnWrite ? "okeanos-cow" : "okeanos") + (options.baselineCliPath === undefined ? "" : "-base");
    this.storeUri = `file:${join(layout.dir, "store")}`;
  }

  protected override get exportName(): string {
    return volumeName;
  }

  async setUp(): Promise<void> {
    await this.cli("store", "init");
    await this.cli("volume", "create", volumeName, "--size", String(this.layout.exportSizeBytes));
    await this.start();
    await prefill(this.uri, this.layout.workingSetBytes, this.prefillOutputPath());
  }

  override async beforeJob(): Promise<void> {
    if (!this.copyOnWrite) return super.beforeJob();
    await this.stop();
    await this.cli("volume", "snapshot", volumeName, `${volumeName}-snap-${++this.#snapshots}`);
    await this.start();
  }

  protected serverCommand(): { command: string; args: string[] } {
    const profile = this.cpuProfileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${this.cpuProfileDir}`];
    return {
      command: process.execPath,
      args: [...profile, this.#cliPath, "--store", this.storeUri, "nbd", "serve", "--socket", this.socketPath, volumeName],
    };
  }

  async cli(...args: string[]): Promise<void> {
    await run(process.execPath, [this.#cliPath, "--store", this.storeUri, ...args]);
  }
}
