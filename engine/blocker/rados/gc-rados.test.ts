/**
 * gc against the operations that reference content blocks (engine/mapper/gc.test.ts), on
 * the rados backend: the reference gate's shared/exclusive lock is a cls_lock there.
 */
import { gcReferrerSuite } from "../../testing/gc-referrers.ts";
import { describeRados, openTestStore } from "./testing/target.ts";

describeRados("gc against referrers on the rados store", (target) => {
  gcReferrerSuite("rados", () => openTestStore(target, "gc"));
});
