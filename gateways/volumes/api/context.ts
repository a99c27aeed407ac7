/**
 * What every route module of the volume API gets: the service, the caller the plugin's hook
 * put on the request, and the absolute URLs for links.
 */
import type { FastifyRequest } from "fastify";
import type { VolumeService } from "../service.ts";
import type { ApiUrls } from "./views.ts";

export interface RouteContext {
  volumes: VolumeService;
  urls(request: FastifyRequest): ApiUrls;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the volume plugin's token hook on every /v3/{project_id} route: the caller's user uuid. */
    volumeCaller: string | null;
  }
}

/** The caller's uuid; its absence on a /v3 route is a bug in the plugin's wiring. */
export function callerOf(request: FastifyRequest): string {
  const caller = request.volumeCaller;
  if (caller === null) throw new Error("volume API: route reached without the token hook");
  return caller;
}

/** A path parameter (fastify has decoded it already). */
export function param(request: FastifyRequest, name: string): string {
  const value = (request.params as Record<string, string | undefined>)[name];
  if (value === undefined) throw new Error(`volume API: route has no :${name}`);
  return value;
}
