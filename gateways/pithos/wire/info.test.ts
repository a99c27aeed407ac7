import { describe, expect, it } from "vitest";
import { capabilities } from "./info.ts";

describe("capabilities (swift.md 9)", () => {
  it("advertises Swift's limits, SLO and bulk delete", () => {
    const info = capabilities() as { swift: Record<string, unknown>; slo: Record<string, unknown>; bulk_delete: Record<string, unknown> };
    expect(info.swift).toMatchObject({
      max_file_size: 5_368_709_122,
      container_listing_limit: 10_000,
      account_listing_limit: 10_000,
      max_object_name_length: 1024,
      max_container_name_length: 256,
      max_meta_name_length: 128,
      max_meta_value_length: 256,
      max_meta_count: 90,
      max_meta_overall_size: 4096,
      max_header_size: 8192,
      policies: [{ name: "Policy-0", aliases: "Policy-0", default: true }],
    });
    expect(info.slo).toMatchObject({ min_segment_size: 1, max_manifest_segments: 1000, max_manifest_size: 8_388_608 });
    expect(info.bulk_delete).toEqual({ max_deletes_per_request: 10_000, max_failed_deletes: 1000 });
  });

  it("leaves out what is not served", () => {
    expect(Object.keys(capabilities({ slo: false, bulkDelete: false }))).toEqual(["swift"]);
  });
});
