import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PithosError } from "./errors.ts";
import {
  accountGroupHeaders,
  applyAccountGroups,
  objectSharingHeader,
  parseAccountGroups,
  parseObjectSharing,
  renderObjectSharing,
  type ObjectSharing,
} from "./sharing.ts";

const alice = "0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";
const bob = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

function message(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    if (error instanceof PithosError && error.status === 400) return error.message;
    throw error;
  }
  throw new Error("no error");
}

describe("parseObjectSharing (synnefo.md B.5, pithos get_sharing)", () => {
  it("reads read and write lists, accounts and account:group grantees", () => {
    expect(parseObjectSharing(`read=${alice},${bob}:friends;write=${bob}`)).toEqual({ read: [alice, `${bob}:friends`], write: [bob] });
    expect(parseObjectSharing(`read=${alice}:team`)).toEqual({ read: [`${alice}:team`], write: [] });
  });

  it("`*` is everyone and absorbs its list; write implies read except for `*`", () => {
    expect(parseObjectSharing(`read=${alice},*;write=*`)).toEqual({ read: ["*"], write: ["*"] });
    expect(parseObjectSharing(`read=${alice};write=${alice}`)).toEqual({ read: [], write: [alice] });
  });

  it("an empty value removes sharing; spaces and `~` are dropped; grantees lower-cased and deduplicated", () => {
    expect(parseObjectSharing("")).toEqual({ read: [], write: [] });
    expect(parseObjectSharing("  ")).toEqual({ read: [], write: [] });
    expect(parseObjectSharing(`read = ${alice.toUpperCase()} , ~${alice}`)).toEqual({ read: [alice], write: [] });
  });

  it.each([
    ["owner=x", "Bad X-Object-Sharing header value: missing prefix"],
    ["read=", "Bad X-Object-Sharing header value: invalid length"],
    ["read=,,", "Bad X-Object-Sharing header value: invalid length"],
    [`read=${alice};`, "Bad X-Object-Sharing header value: missing prefix"],
    ["read=a:b:c", "Bad X-Object-Sharing header value: invalid grantee: a:b:c"],
    ["read=a:b-c", "Bad X-Object-Sharing header value: invalid grantee: a:b-c"],
    ["read=:g", "Bad X-Object-Sharing header value: invalid grantee: :g"],
    ["read=a=b", "Bad X-Object-Sharing header value: invalid grantee: a=b"],
    ["read=\xff", "Bad X-Object-Sharing header value: not UTF-8"],
  ])("%j → 400 %s", (value, expected) => {
    expect(message(() => parseObjectSharing(value))).toBe(expected);
  });

  it("renders as Pithos+ does, and round-trips", () => {
    expect(renderObjectSharing({ read: [alice, `${bob}:friends`], write: [bob] })).toBe(`read=${alice},${bob}:friends; write=${bob}`);
    expect(renderObjectSharing({ read: [], write: [] })).toBe("");
    const account = fc.stringMatching(/^[a-z0-9.@-]{1,20}$/);
    const grantee = fc.oneof(account, fc.tuple(account, fc.stringMatching(/^[a-z0-9.]{1,10}$/)).map(([a, g]) => `${a}:${g}`));
    const list = fc.oneof(fc.constant<string[]>(["*"]), fc.uniqueArray(grantee, { maxLength: 5 }));
    fc.assert(
      fc.property(list, list, (read, write) => {
        const sharing: ObjectSharing = { read: read.filter((g) => g === "*" || !write.includes(g)), write };
        expect(parseObjectSharing(objectSharingHeader(sharing))).toEqual(sharing);
      }),
    );
  });

  it("throws nothing but PithosError on arbitrary values", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string().map((s) => `read=${s}`), fc.string({ unit: "binary" })), (value) => {
        try {
          parseObjectSharing(value);
        } catch (error) {
          expect(error).toBeInstanceOf(PithosError);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("account groups (X-Account-Group-<name>)", () => {
  it("parses members, drops spaces, empties and duplicates; an empty value removes", () => {
    expect(parseAccountGroups({ "x-account-group-friends": `${alice}, ${bob},,${alice}`, "x-account-group-old": "", "x-account-meta-x": "y" })).toEqual({
      friends: [alice, bob],
      old: [],
    });
  });

  it.each([
    [{ "x-account-group-my-friends": alice }, "Bad characters in group name"],
    [{ "x-account-group-my_friends": alice }, "Bad characters in group name"],
    [{ "x-account-group-": alice }, "Bad characters in group name"],
    [{ "x-account-group-g": "a:b" }, "Bad group member: a:b"],
    [{ "x-account-group-g": "*" }, "Bad group member: *"],
    [{ [`x-account-group-${"g".repeat(257)}`]: alice }, "Group names should be at most 256 characters long."],
    [{ "x-account-group-g": "m".repeat(257) }, "Group members should be at most 256 characters long."],
  ])("%j → 400 %s", (headers, expected) => {
    expect(message(() => parseAccountGroups(headers))).toBe(expected);
  });

  it("replace keeps the request's groups, merge updates; empty lists remove", () => {
    const existing = { friends: [alice], family: [bob] };
    expect(applyAccountGroups(existing, { team: [bob], family: [] }, "merge")).toEqual({ friends: [alice], team: [bob] });
    expect(applyAccountGroups(existing, { team: [bob] }, "replace")).toEqual({ team: [bob] });
  });

  it("limits groups and members to 32 each (Pithos+ defaults)", () => {
    const groups = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`g${i}`, [alice]]));
    expect(message(() => applyAccountGroups({}, groups, "merge"))).toBe("Pithos+ accounts cannot have more than 32 groups");
    const members = Array.from({ length: 33 }, (_, i) => `member${i}`);
    expect(message(() => applyAccountGroups({}, { big: members }, "merge"))).toBe("Pithos+ groups cannot have more than 32 members");
  });

  it("renders headers with capitalised names, and round-trips", () => {
    expect(accountGroupHeaders({ friends: [alice, bob], gone: [] })).toEqual({ "X-Account-Group-Friends": `${alice},${bob}` });
    const groupName = fc.stringMatching(/^[a-z0-9.]{1,12}$/);
    const member = fc.stringMatching(/^[a-z0-9.@-]{1,20}$/);
    fc.assert(
      fc.property(fc.dictionary(groupName, fc.uniqueArray(member, { minLength: 1, maxLength: 5 }), { maxKeys: 5 }), (groups) => {
        const headers = Object.fromEntries(Object.entries(accountGroupHeaders(groups)).map(([name, value]) => [name.toLowerCase(), value]));
        expect(parseAccountGroups(headers)).toEqual(groups);
      }),
    );
  });

  it("throws nothing but PithosError on arbitrary headers", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string().map((s) => `x-account-group-${s}`), fc.oneof(fc.string(), fc.array(fc.string()))), (headers) => {
        try {
          parseAccountGroups(headers);
        } catch (error) {
          expect(error).toBeInstanceOf(PithosError);
        }
      }),
    );
  });
});
