/** Small pieces every identity encoder shares: dates, base URLs, headers. */
import type { FastifyRequest } from "fastify";

/** Keystone's timestamp form, `2026-11-24T05:45:31.000000Z` (openstack-clients.md 1.2 "Dates"). */
export function keystoneTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/**
 * The public base URL the catalog and version documents point at: the configured one, or the
 * one the client used (scheme and Host). Clients follow these hrefs, so they must be absolute
 * and carry our public path (openstack-clients.md 1.1).
 */
export function publicBaseUrl(request: FastifyRequest, configured: string | undefined): string {
  if (configured !== undefined) return configured.replace(/\/+$/, "");
  return `${request.protocol}://${request.host}`;
}

/** A header's one value: a repeated header is refused rather than guessed at. */
export function singleHeader(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  if (Array.isArray(value)) return undefined;
  return value === undefined || value === "" ? undefined : value;
}
