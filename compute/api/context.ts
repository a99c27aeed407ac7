/**
 * What every route module of the compute API gets: the service, the caller and microversion
 * the plugin's hooks put on the request, and the absolute URLs for links.
 */
import type { FastifyRequest } from "fastify";
import type { ComputeApi, ComputeCaller } from "../model.ts";
import type { ApiUrls } from "./views.ts";

export interface RouteContext {
  compute: ComputeApi;
  urls(request: FastifyRequest): ApiUrls;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the compute plugin's token hook on every /v2.1 route. */
    computeCaller: ComputeCaller | null;
    /** The negotiated minor version of 2.x (microversion.ts); 1 before negotiation. */
    computeMicroversion: number;
  }
}

/** The caller; its absence on a /v2.1 route is a bug in the plugin's wiring. */
export function callerOf(request: FastifyRequest): ComputeCaller {
  const caller = request.computeCaller;
  if (caller === null) throw new Error("compute API: route reached without the token hook");
  return caller;
}

export function microversionOf(request: FastifyRequest): number {
  return request.computeMicroversion;
}

/** A path parameter (fastify has decoded it already). */
export function param(request: FastifyRequest, name: string): string {
  const value = (request.params as Record<string, string | undefined>)[name];
  if (value === undefined) throw new Error(`compute API: route has no :${name}`);
  return value;
}
