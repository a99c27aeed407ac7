/**
 * librados failures as engine errors. ENOENT and EEXIST are answers, handled where they
 * occur; anything else reaching here is an operating error of the store (EIO), its errno
 * kept in `details.errno` by name (ENOSPC, ETIMEDOUT, EACCES…).
 */
import { constants } from "node:os";
import { EngineError } from "../../errors.ts";
import { isRadosError } from "./native.ts";

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, number]) => [number, name]));

/** Why a client sees ESHUTDOWN on every op: it was blocklisted (fenced) after losing a lock lease. */
const eshutdown = 108;

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/** A RadosError becomes EIO; EngineErrors and bugs (TypeError…) pass through unchanged. */
export function radosErrorToEngineError(error: unknown, action: string): unknown {
  if (!isRadosError(error)) return error;
  const name = errnoName(error.errno);
  const hint = error.errno === eshutdown ? " — this client was blocklisted: another process took over a lock whose lease it had let run out" : "";
  return new EngineError("EIO", `${action}: ${error.message}${hint}`, { errno: name }, { cause: error });
}
