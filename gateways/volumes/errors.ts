/**
 * The volume service's one table of errors. `api/faults.ts` maps each code to Cinder's fault
 * body (cinder/api/openstack/wsgi.py Fault: `{"<faultName>": {"code": N, "message": "…"}}`);
 * compute/ (os-volume_attachments) maps them to Nova's, the CLI prints the message.
 * toVolumeError maps the layers below (database, engine, images) here, once.
 */
import { isDbError } from "../../db/index.ts";
import { isEngineError } from "../../engine/errors.ts";
import { isPlanktonError } from "../plankton/index.ts";

export const volumeErrors = {
  EBAD_REQUEST: { status: 400, fault: "badRequest" },
  EUNAUTHORIZED: { status: 401, fault: "unauthorized" },
  EFORBIDDEN: { status: 403, fault: "forbidden" },
  ENOT_FOUND: { status: 404, fault: "itemNotFound" },
  /** A microversion outside the range we serve (cinder InvalidGlobalAPIVersion). */
  ENOT_ACCEPTABLE: { status: 406, fault: "computeFault" },
  /** Wrong state for the action (Cinder answers InvalidVolume/InvalidSnapshot with 400; see api/faults.ts). */
  EINVALID_STATE: { status: 400, fault: "badRequest" },
  ECONFLICT: { status: 409, fault: "conflictingRequest" },
  /** Over quota: Cinder's VolumeSizeExceedsAvailableQuota, 413 overLimit. */
  EQUOTA: { status: 413, fault: "overLimit" },
  EINTERNAL: { status: 500, fault: "computeFault" },
  ENOT_IMPLEMENTED: { status: 501, fault: "notImplemented" },
} as const;

export type VolumeErrorCode = keyof typeof volumeErrors;

export class VolumeError extends Error {
  readonly code: VolumeErrorCode;

  constructor(code: VolumeErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = "VolumeError";
    this.code = code;
  }

  get status(): number {
    return volumeErrors[this.code].status;
  }
}

export function isVolumeError(error: unknown, code?: VolumeErrorCode): error is VolumeError {
  return error instanceof VolumeError && (code === undefined || error.code === code);
}

/** Cinder's wording (cinder/exception.py VolumeNotFound). */
export function volumeNotFound(id: string): VolumeError {
  return new VolumeError("ENOT_FOUND", `Volume ${id} could not be found.`);
}

/** Cinder's wording (cinder/exception.py SnapshotNotFound). */
export function snapshotNotFound(id: string): VolumeError {
  return new VolumeError("ENOT_FOUND", `Snapshot ${id} could not be found.`);
}

/** A database refusal as the API's error; VolumeErrors pass. */
export async function dbCall<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    throw toVolumeError(error);
  }
}

/** Operating errors of the layers below as VolumeErrors; anything else passes unchanged (a 500). */
export function toVolumeError(error: unknown): unknown {
  if (isVolumeError(error)) return error;
  if (isDbError(error)) {
    switch (error.code) {
      case "ENOT_FOUND":
        return new VolumeError("ENOT_FOUND", error.message, { cause: error });
      case "EINVALID":
        return new VolumeError("EBAD_REQUEST", `Invalid input received: ${error.message}`, { cause: error });
      case "ECONFLICT":
        return new VolumeError("EINVALID_STATE", error.message, { cause: error });
      case "EEXISTS":
        return new VolumeError("ECONFLICT", error.message, { cause: error });
      default:
        return error;
    }
  }
  if (isPlanktonError(error, "ENOT_FOUND")) return new VolumeError("EBAD_REQUEST", "Invalid image identifier or unable to access requested image.", { cause: error });
  if (isEngineError(error, "EVOLUME_LOCKED")) return new VolumeError("EINVALID_STATE", `Invalid volume: the volume is open elsewhere (${error.message}).`, { cause: error });
  return error;
}
