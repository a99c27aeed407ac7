/**
 * Login failure throttling, per user name: after `failuresMax` failed logins within
 * `windowMs`, every login for that name (right password or not) is refused with 429 until the
 * window that began with the first failure ends. Keyed by the name as typed (lower-cased),
 * whether or not such a user exists, so the throttle itself says nothing about existence.
 *
 * In memory, per process: with several API nodes an attacker gets failuresMax per node per
 * window — still a bound. A success clears the name's count.
 *
 *   name ──► { failures, windowStartMs }     Map in insertion order = oldest first,
 *                                             evicted from the front past entriesMax
 */

/** Five tries a minute: a person mistyping never meets it; a guesser gets 7200 a day per name. */
export const loginFailuresMaxDefault = 5;
export const loginFailureWindowMsDefault = 60_000;
/**
 * Names tracked at most. Each entry is ~100 bytes, so 100 000 bound the map to ~10 MB even
 * when an attacker sprays random names; the oldest entries go first.
 */
export const throttledNamesMax = 100_000;

export interface LoginThrottleOptions {
  failuresMax?: number;
  windowMs?: number;
  now?: () => number;
}

interface Entry {
  failures: number;
  windowStartMs: number;
}

export class LoginThrottle {
  readonly failuresMax: number;
  readonly windowMs: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();

  constructor(options: LoginThrottleOptions = {}) {
    this.failuresMax = options.failuresMax ?? loginFailuresMaxDefault;
    this.windowMs = options.windowMs ?? loginFailureWindowMsDefault;
    this.#now = options.now ?? Date.now;
  }

  /** Seconds until this name may try again, or 0 when it may try now. */
  retryAfterSeconds(name: string): number {
    const entry = this.#live(name.toLowerCase());
    if (entry === undefined || entry.failures < this.failuresMax) return 0;
    return Math.max(1, Math.ceil((entry.windowStartMs + this.windowMs - this.#now()) / 1000));
  }

  recordFailure(name: string): void {
    const key = name.toLowerCase();
    const entry = this.#live(key);
    if (entry !== undefined) {
      entry.failures += 1;
      return;
    }
    this.#entries.set(key, { failures: 1, windowStartMs: this.#now() });
    if (this.#entries.size > throttledNamesMax) this.#entries.delete(this.#entries.keys().next().value!);
  }

  recordSuccess(name: string): void {
    this.#entries.delete(name.toLowerCase());
  }

  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry !== undefined && this.#now() - entry.windowStartMs >= this.windowMs) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }
}
