/**
 * Sharing an image is sharing its file (synnefo.md C): the file's own Pithos+ sharing is the
 * one source of truth for Glance's visibility and members.
 *
 *   visibility  public   `*` among the file's grantees
 *               shared   other grantees (user uuids, `<account>:<group>`), no `*`
 *               private  nobody but the owner
 *   members     every grantee but `*` (read or write: write implies read)
 *
 * Glance keeps `shared` with no members apart from `private`; a file cannot, so such an image
 * reads back as `private` — the same access either way.
 */
import type { PithosSharing } from "../../db/index.ts";

export const visibilities = ["public", "private", "shared"] as const;
export type Visibility = (typeof visibilities)[number];

const everyone = "*";

export function visibilityOf(sharing: PithosSharing | null): Visibility {
  if (sharing === null) return "private";
  if (sharing.read.includes(everyone) || sharing.write.includes(everyone)) return "public";
  return sharing.read.length + sharing.write.length > 0 ? "shared" : "private";
}

export function membersOf(sharing: PithosSharing | null): string[] {
  if (sharing === null) return [];
  return [...new Set([...sharing.read, ...sharing.write])].filter((entry) => entry !== everyone).sort();
}

/** The sharing that gives `visibility`, members kept where that allows them. */
export function withVisibility(sharing: PithosSharing | null, visibility: Visibility): PithosSharing | null {
  const read = sharing?.read ?? [];
  const write = sharing?.write ?? [];
  switch (visibility) {
    case "public":
      return normalized({ read: [...read, everyone], write });
    case "shared":
      return normalized({ read: read.filter((entry) => entry !== everyone), write: write.filter((entry) => entry !== everyone) });
    case "private":
      return null;
  }
}

export function withMember(sharing: PithosSharing | null, member: string): PithosSharing {
  return normalized({ read: [...(sharing?.read ?? []), member], write: sharing?.write ?? [] }) ?? { read: [member], write: [] };
}

export function withoutMember(sharing: PithosSharing | null, member: string): PithosSharing | null {
  return normalized({ read: (sharing?.read ?? []).filter((entry) => entry !== member), write: (sharing?.write ?? []).filter((entry) => entry !== member) });
}

/** Plankton v1's replace-members: exactly these members, public stays public. */
export function withMembers(sharing: PithosSharing | null, members: readonly string[]): PithosSharing | null {
  const isPublic = visibilityOf(sharing) === "public";
  const wanted = new Set(members);
  return normalized({
    read: [...members, ...(isPublic ? [everyone] : [])],
    write: (sharing?.write ?? []).filter((entry) => wanted.has(entry) || entry === everyone),
  });
}

/** Duplicates dropped; null when nobody is left (setSharing removes the sharing then). */
function normalized(sharing: PithosSharing): PithosSharing | null {
  const read = [...new Set(sharing.read)];
  const write = [...new Set(sharing.write)];
  return read.length + write.length === 0 ? null : { read, write };
}
