/** What each object-name prefix holds (engine/blocker/README.md has the full table). */
export type ObjectKind = "content-block" | "private-block" | "map-header" | "map-entries" | "map-original-entries" | "directory" | "store-header" | "other";

const kindsByPrefix: ReadonlyArray<[string, ObjectKind]> = [
  ["b.", "content-block"],
  ["p.", "private-block"],
  ["m.", "map-header"],
  ["e.", "map-entries"],
  ["o.", "map-original-entries"],
  ["d.", "directory"],
  ["okeanos.store", "store-header"],
];

export function objectKind(name: string): ObjectKind {
  for (const [prefix, kind] of kindsByPrefix) if (name.startsWith(prefix)) return kind;
  return "other";
}
