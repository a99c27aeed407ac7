/**
 * The job worker of the serving process: claims queued jobs from compute_jobs and runs them
 * (steps.ts). It is woken when this process queues a job and also polls the table every
 * `pollMs`, because `okeanos server …` commands in other processes only insert jobs. At start
 * it first resumes the jobs a crash left `running` (their steps are idempotent).
 *
 *   start() ─► resume running ─► pump ◄── wake() / poll timer / a job finished
 *                                  │ claim while inFlight < jobsInFlightMax
 *                                  ▼
 *                              runJob(job) ─► finish (job + server, one transaction)
 *
 * Jobs of different servers run concurrently (a long createImage does not hold up a start);
 * the claim never gives out two jobs of one server at once (db/queries/compute-jobs.ts).
 */
import { claimComputeJob, resumeComputeJobs, type ComputeJob, type MetadataDatabase } from "../db/index.ts";
import type { Logger } from "./steps.ts";

/** How often the table is polled for jobs other processes queued: a CLI action starts within 1 s. */
export const jobPollMsDefault = 1_000;
/**
 * Jobs run at once. Each is mostly waiting (QEMU boot, a guest's ACPI shutdown, hashing a
 * volume in the engine's worker threads); four keeps a slow freeze from blocking starts
 * without flooding a small host with QEMU launches.
 */
export const jobsInFlightMax = 4;

export interface JobWorkerOptions {
  db: MetadataDatabase;
  run(job: ComputeJob): Promise<void>;
  logger: Logger;
  pollMs?: number;
  now(): number;
}

export class JobWorker {
  readonly #options: JobWorkerOptions;
  readonly #inFlight = new Map<number, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #pumping: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  #idleWaiters: Array<() => void> = [];

  constructor(options: JobWorkerOptions) {
    this.#options = options;
  }

  /** Resumes the jobs a crash left running, then runs queued ones and polls. */
  async start(): Promise<void> {
    const resumed = await resumeComputeJobs(this.#options.db, this.#options.now());
    if (resumed.length > 0) this.#options.logger.info({ jobs: resumed.map((job) => job.id) }, "resuming compute jobs left running");
    for (const job of resumed) this.#launch(job);
    const pollMs = this.#options.pollMs ?? jobPollMsDefault;
    this.#timer = setInterval(() => this.wake(), pollMs);
    this.#timer.unref();
    this.wake();
  }

  /** Looks for claimable jobs now (a job was just queued or finished). */
  wake(): void {
    if (this.#stopped) return;
    if (this.#pumping !== undefined) {
      this.#again = true;
      return;
    }
    this.#pumping = this.#pump().finally(() => {
      this.#pumping = undefined;
      if (this.#again) {
        this.#again = false;
        this.wake();
      } else if (this.#inFlight.size === 0) {
        this.#notifyIdle();
      }
    });
  }

  /**
   * Resolves once nothing runs and the last look found nothing to claim (tests, and a clean
   * shutdown). Jobs queued by other processes after that are not waited for.
   */
  idle(): Promise<void> {
    if (this.#inFlight.size === 0 && this.#pumping === undefined) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Stops claiming; waits for the jobs in flight unless `abandon` (a simulated crash). */
  async stop(options: { abandon?: boolean } = {}): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    if (options.abandon === true) return;
    await this.#pumping;
    await Promise.allSettled([...this.#inFlight.values()]);
  }

  async #pump(): Promise<void> {
    while (!this.#stopped && this.#inFlight.size < jobsInFlightMax) {
      let job: ComputeJob | undefined;
      try {
        job = await claimComputeJob(this.#options.db, this.#options.now());
      } catch (error) {
        this.#options.logger.error({ err: error }, "claiming a compute job failed");
        return;
      }
      if (job === undefined) return;
      this.#launch(job);
    }
  }

  #launch(job: ComputeJob): void {
    const running = this.#options
      .run(job)
      .catch((error: unknown) => {
        // runJob records failures itself; reaching here means the database write failed. The
        // job stays `running` and is resumed at the next start.
        this.#options.logger.error({ err: error, job: job.id }, "compute job could not be recorded");
      })
      .finally(() => {
        this.#inFlight.delete(job.id);
        this.wake();
      });
    this.#inFlight.set(job.id, running);
  }

  #notifyIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
