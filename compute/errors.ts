/**
 * The compute service's one table of errors. `api/` maps each code to Nova's fault body
 * (`{"<faultName>":{"code":N,"message":"…"}}`, openstack-clients.md 3.3); the CLI prints the
 * message and exits with its own code.
 */

export const computeErrors = {
  EBAD_REQUEST: { status: 400, fault: "badRequest" },
  EUNAUTHORIZED: { status: 401, fault: "unauthorized" },
  EFORBIDDEN: { status: 403, fault: "forbidden" },
  /** Over quota: Nova answers 403 with the same fault name. */
  EQUOTA: { status: 403, fault: "forbidden" },
  ENOT_FOUND: { status: 404, fault: "itemNotFound" },
  ECONFLICT: { status: 409, fault: "conflictingRequest" },
  ENOT_ACCEPTABLE: { status: 406, fault: "notAcceptable" },
  EINTERNAL: { status: 500, fault: "computeFault" },
  ENOT_IMPLEMENTED: { status: 501, fault: "notImplemented" },
  /** The hypervisor could not do what was asked (QEMU failed to start, QMP timed out). */
  EHYPERVISOR: { status: 500, fault: "computeFault" },
} as const;

export type ComputeErrorCode = keyof typeof computeErrors;

export class ComputeError extends Error {
  readonly code: ComputeErrorCode;

  constructor(code: ComputeErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = "ComputeError";
    this.code = code;
  }
}

export function isComputeError(error: unknown, code?: ComputeErrorCode): error is ComputeError {
  return error instanceof ComputeError && (code === undefined || error.code === code);
}
