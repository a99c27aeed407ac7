/**
 * The object store's limits, in one place, and the `/info` capabilities document that
 * advertises them (swift.md 9 "/info"). Every other wire module and every route takes its
 * limits from here, so what /info promises is what the server enforces.
 *
 * Values are Swift 2.30.1's defaults (swift/common/constraints.py DEFAULT_CONSTRAINTS,
 * middleware/slo.py, middleware/bulk.py): clients size their requests from /info (swiftclient
 * segments and bulk-delete batches, rclone's listing pages), and the measured behaviour in
 * swift.md is against these values.
 */

/** Who we say we are in /info's `swift.version`; clients only display it. */
export const swiftCompatibleVersion = "2.30.1";

/** 5 GiB + 2 bytes: Swift's single-PUT limit (constraints.py MAX_FILE_SIZE); larger files become DLO/SLO. */
export const maxFileSizeBytes = 5_368_709_122;
/** Metadata name, in UTF-8 bytes, not counting the `X-<Scope>-Meta-` prefix (constraints.py). */
export const maxMetaNameBytes = 128;
/** Metadata value, in UTF-8 bytes. */
export const maxMetaValueBytes = 256;
/** User metadata items per resource. Pithos+ defaults to 32 (synnefo.md B.1); Swift clients expect 90. */
export const maxMetaCount = 90;
/** Sum over items of name bytes + value bytes. */
export const maxMetaOverallBytes = 4096;
/** One header value, in bytes; Swift checks every header of a metadata-carrying request against it. */
export const maxHeaderBytes = 8192;
/** Object name, in UTF-8 bytes (constraints.py MAX_OBJECT_NAME_LENGTH, synnefo.md B.1). */
export const maxObjectNameBytes = 1024;
/** Container name, in UTF-8 bytes. */
export const maxContainerNameBytes = 256;
/** Account name, in UTF-8 bytes: `AUTH_` + a 36-character UUID fits with room to spare. */
export const maxAccountNameBytes = 256;
/** Default and maximum `limit` of a container listing; a larger `limit` is 412 (swift.md 8). */
export const containerListingLimit = 10_000;
/** Default and maximum `limit` of an account listing. */
export const accountListingLimit = 10_000;
/** The API versions the path may start with (constraints.py VALID_API_VERSIONS). */
export const validApiVersions: readonly string[] = ["v1", "v1.0"];

/** SLO (middleware/slo.py defaults): segments per manifest and the manifest body's size (8 MiB). */
export const sloMaxManifestSegments = 1000;
export const sloMaxManifestBytes = 8 * 1024 * 1024;
/** Swift stopped enforcing a minimum segment size; it reports 1 "for clients that might still care". */
export const sloMinSegmentBytes = 1;

/** Bulk delete (middleware/bulk.py defaults): names per request, and failures before it gives up. */
export const bulkMaxDeletesPerRequest = 10_000;
export const bulkMaxFailedDeletes = 1000;

/** Pithos+ account groups (synnefo.md B.5; pithos settings ACC_MAX_GROUPS, ACC_MAX_GROUP_MEMBERS). */
export const maxAccountGroups = 32;
export const maxGroupMembers = 32;
/** Pithos+ backend `_check_groups`: group names and members are at most 256 characters. */
export const maxGroupNameLength = 256;
export const maxGroupMemberLength = 256;

/** The one storage policy we have; Swift names its default `Policy-0` (swift.md 3, 4). */
export const storagePolicyName = "Policy-0";

export interface InfoOptions {
  /** Advertise SLO; swift CLI then offers `--use-slo` and deletes SLOs with `?multipart-manifest=delete`. */
  slo?: boolean;
  /** Advertise bulk delete; without it swift CLI and rclone fall back to one DELETE per object (swift.md 9). */
  bulkDelete?: boolean;
}

/**
 * GET /info's body (no auth, 200 JSON). The `swift` section has proxy/server.py's keys: the
 * effective constraints plus version and policies; `slo` and `bulk_delete` are what the
 * middlewares register. Sections for features we do not serve are left out: a client that reads
 * `tempurl` or `symlink` here would use them.
 */
export function capabilities(options: InfoOptions = {}): Record<string, unknown> {
  const { slo = true, bulkDelete = true } = options;
  const document: Record<string, unknown> = {
    swift: {
      version: swiftCompatibleVersion,
      strict_cors_mode: true,
      policies: [{ name: storagePolicyName, aliases: storagePolicyName, default: true }],
      allow_account_management: false,
      account_autocreate: true,
      max_file_size: maxFileSizeBytes,
      max_meta_name_length: maxMetaNameBytes,
      max_meta_value_length: maxMetaValueBytes,
      max_meta_count: maxMetaCount,
      max_meta_overall_size: maxMetaOverallBytes,
      max_header_size: maxHeaderBytes,
      max_object_name_length: maxObjectNameBytes,
      container_listing_limit: containerListingLimit,
      account_listing_limit: accountListingLimit,
      max_account_name_length: maxAccountNameBytes,
      max_container_name_length: maxContainerNameBytes,
      valid_api_versions: [...validApiVersions],
      extra_header_count: 0,
    },
  };
  if (slo) {
    document.slo = {
      max_manifest_segments: sloMaxManifestSegments,
      max_manifest_size: sloMaxManifestBytes,
      min_segment_size: sloMinSegmentBytes,
      yield_frequency: 10,
      allow_async_delete: false,
    };
  }
  if (bulkDelete) {
    document.bulk_delete = { max_deletes_per_request: bulkMaxDeletesPerRequest, max_failed_deletes: bulkMaxFailedDeletes };
  }
  return document;
}
