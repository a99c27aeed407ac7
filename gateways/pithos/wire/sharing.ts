/**
 * Pithos+ sharing (synnefo.md B.5; pithos/api/util.py get_sharing, get_account_headers,
 * update_sharing_meta):
 *
 *   X-Object-Sharing: read=<uuid>,<uuid>:<group>;write=<uuid>     `*` = everyone, empty = remove
 *   X-Account-Group-<name>: <uuid>,<uuid>                         empty = remove the group
 *
 * Grantees are lower-cased and spaces dropped, as Pithos+ does. Who a grantee is (a UUID, or a
 * display name the route may translate) is the route's business; here they are only checked for
 * shape: `*`, `<account>`, or `<account>:<group>`.
 */
import { PithosError } from "./errors.ts";
import { decodeHeaderText, encodeHeaderText, titleCaseHeaderName, type IncomingHeaders } from "./header-text.ts";
import { maxAccountGroups, maxGroupMemberLength, maxGroupMembers, maxGroupNameLength } from "./info.ts";

export interface ObjectSharing {
  read: string[];
  write: string[];
}

function badSharing(reason: string): PithosError {
  return new PithosError("EBAD_REQUEST", `Bad X-Object-Sharing header value: ${reason}`);
}

/**
 * A group name. Pithos+ takes any header-name characters but `-` and `_`; we take the letters,
 * digits and dots of those, since `*`, `~`, `:` and the like mean something inside
 * X-Object-Sharing, where a group is named as `<account>:<group>`. Header names reach us
 * lower-cased, and Pithos+ lower-cases group names too.
 */
const groupNamePattern = /^[a-z0-9.]+$/;

/** `*`, `<account>` or `<account>:<group>`; account names have no separators of the sharing syntax. */
function isGrantee(entry: string): boolean {
  if (entry === "*") return true;
  const [account = "", group, ...rest] = entry.split(":");
  if (rest.length > 0 || account === "" || account.length > maxGroupMemberLength || /[,;=*\s]/.test(account)) return false;
  return group === undefined || (groupNamePattern.test(group) && group.length <= maxGroupNameLength);
}

function parseGrantees(list: string): string[] {
  const grantees: string[] = [];
  for (const entry of list.split(",")) {
    const grantee = entry.toLowerCase();
    if (grantee === "") continue;
    if (!isGrantee(grantee)) throw badSharing(`invalid grantee: ${grantee}`);
    if (!grantees.includes(grantee)) grantees.push(grantee);
  }
  if (grantees.length === 0) throw badSharing("invalid length");
  return grantees.includes("*") ? ["*"] : grantees;
}

/**
 * The header's permissions; `{read: [], write: []}` for an empty value (= stop sharing).
 * Pithos+ rules: `~` and spaces are dropped, each part must start `read=` or `write=`, a list
 * must name someone, `*` absorbs the rest of its list, and a grantee with write access is
 * dropped from read (write implies read).
 */
export function parseObjectSharing(raw: string): ObjectSharing {
  const value = decodeHeaderText(raw);
  if (value === undefined) throw badSharing("not UTF-8");
  const text = value.replace(/[~ \t]/g, "");
  const sharing: ObjectSharing = { read: [], write: [] };
  if (text === "") return sharing;
  for (const part of text.split(";")) {
    if (part.startsWith("read=")) sharing.read = parseGrantees(part.slice(5));
    else if (part.startsWith("write=")) sharing.write = parseGrantees(part.slice(6));
    else throw badSharing("missing prefix");
  }
  sharing.read = sharing.read.filter((grantee) => grantee === "*" || !sharing.write.includes(grantee));
  return sharing;
}

/** `read=a,b; write=c` as Pithos+ renders it (text, for listings); empty when nothing is shared. */
export function renderObjectSharing(sharing: ObjectSharing): string {
  const parts: string[] = [];
  if (sharing.read.length > 0) parts.push(`read=${sharing.read.join(",")}`);
  if (sharing.write.length > 0) parts.push(`write=${sharing.write.join(",")}`);
  return parts.join("; ");
}

/** renderObjectSharing as an X-Object-Sharing header value (header-text.ts). */
export function objectSharingHeader(sharing: ObjectSharing): string {
  return encodeHeaderText(renderObjectSharing(sharing));
}

/** Group name → members; an empty list means "remove this group". */
export type AccountGroups = Record<string, string[]>;

const groupHeaderPrefix = "x-account-group-";

/** `X-Account-Group-<name>` headers. Names with `-` or `_` → 400 "Bad characters in group name". */
export function parseAccountGroups(headers: IncomingHeaders): AccountGroups {
  const groups: AccountGroups = {};
  for (const [lowerName, rawValue] of Object.entries(headers)) {
    const name = lowerName.toLowerCase();
    if (!name.startsWith(groupHeaderPrefix) || rawValue === undefined) continue;
    const group = name.slice(groupHeaderPrefix.length);
    if (group === "" || !groupNamePattern.test(group)) throw new PithosError("EBAD_REQUEST", "Bad characters in group name");
    if (group.length > maxGroupNameLength) throw new PithosError("EBAD_REQUEST", `Group names should be at most ${maxGroupNameLength} characters long.`);
    const value = decodeHeaderText(Array.isArray(rawValue) ? rawValue.join(",") : rawValue);
    if (value === undefined) throw new PithosError("EBAD_REQUEST", "Bad group members: not UTF-8");
    const members: string[] = [];
    for (const member of value.replace(/[ \t]/g, "").split(",")) {
      if (member === "" || members.includes(member)) continue;
      if (member.length > maxGroupMemberLength) throw new PithosError("EBAD_REQUEST", `Group members should be at most ${maxGroupMemberLength} characters long.`);
      if (!isGrantee(member.toLowerCase()) || member.includes(":") || member === "*") throw new PithosError("EBAD_REQUEST", `Bad group member: ${member}`);
      members.push(member);
    }
    groups[group] = members;
  }
  return groups;
}

/**
 * The account's groups after a POST: `replace` (Pithos+ POST without `?update`) keeps only the
 * request's groups, `merge` updates the existing ones; empty lists remove. Limits as the Pithos+
 * backend's update_account_groups: at most 32 groups of at most 32 members.
 */
export function applyAccountGroups(existing: AccountGroups, changes: AccountGroups, mode: "replace" | "merge"): AccountGroups {
  const result: AccountGroups = mode === "merge" ? { ...existing } : {};
  for (const [group, members] of Object.entries(changes)) {
    if (members.length === 0) delete result[group];
    else result[group] = members;
  }
  if (Object.keys(result).length > maxAccountGroups) {
    throw new PithosError("EBAD_REQUEST", `Pithos+ accounts cannot have more than ${maxAccountGroups} groups`);
  }
  for (const members of Object.values(result)) {
    if (members.length > maxGroupMembers) throw new PithosError("EBAD_REQUEST", `Pithos+ groups cannot have more than ${maxGroupMembers} members`);
  }
  return result;
}

/** `X-Account-Group-<Name>: a,b` headers, names capitalised as Pithos+ sends them. */
export function accountGroupHeaders(groups: AccountGroups): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [group, members] of Object.entries(groups)) {
    if (members.length > 0) headers[`X-Account-Group-${titleCaseHeaderName(group)}`] = encodeHeaderText(members.join(","));
  }
  return headers;
}
