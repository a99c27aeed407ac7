/**
 * The plugin's one error handler: every failure becomes Swift's status and small HTML page
 * (wire/errors.ts). Engine and database errors are mapped here, once; anything unexpected is
 * a 500 that says nothing of its cause (the log has it, under the request id).
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { isDbError } from "../../db/index.ts";
import { isEngineError } from "../../engine/errors.ts";
import { errorResponse, PithosError, toPithosError } from "./wire/errors.ts";

function fromLowerLayers(error: unknown): PithosError | undefined {
  if (isDbError(error)) {
    switch (error.code) {
      case "ENOT_FOUND":
        return new PithosError("ENOT_FOUND", undefined, { cause: error });
      case "EEXISTS":
      case "ECONFLICT":
        return new PithosError("ECONFLICT", undefined, { cause: error });
      case "EPRECONDITION":
        return new PithosError("EPRECONDITION_FAILED", undefined, { cause: error });
      case "EQUOTA_EXCEEDED":
        return new PithosError("ETOO_LARGE", "Upload exceeds quota.", { cause: error });
      case "EINVALID":
        return new PithosError("EBAD_REQUEST", error.message, { cause: error });
      default:
        return undefined;
    }
  }
  // writeFile's maxBytes: the upload grew past the largest object we take.
  if (isEngineError(error, "EINVALID") && error.details["maxBytes"] !== undefined) return new PithosError("ETOO_LARGE", undefined, { cause: error });
  if (isEngineError(error, "ERANGE_PAST_END")) return new PithosError("ERANGE_NOT_SATISFIABLE", undefined, { cause: error });
  return undefined;
}

export function sendPithosError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const mapped = fromLowerLayers(error) ?? toPithosError(error);
  const { status, headers, body } = errorResponse(mapped, request.method);
  if (status >= 500) request.log.error({ err: error }, "object-store: internal error");
  else request.log.info({ code: mapped.code, message: mapped.message }, "object-store: request refused");
  return reply.code(status).headers(headers).header("content-length", String(body.length)).send(body);
}
