/** What serve/, cli/ and compute/ import from the image service. */
export { planktonPlugin, jsonBodyBytesMax, type PlanktonPluginOptions } from "./plugin.ts";
export { PlanktonService, imagesContainerName, type PlanktonServiceOptions } from "./service.ts";
export { registerFileAsImage, resolveImage, type RegisterFileOptions, type ResolvedImage } from "./api.ts";
export { PlanktonError, isPlanktonError, planktonErrors, type PlanktonErrorCode } from "./errors.ts";
export { imageSizeBytesMax } from "./convert.ts";
export { visibilityOf, membersOf, withVisibility, type Visibility } from "./sharing.ts";
export {
  beginFreeze,
  completeFreeze,
  failFreeze,
  freezeSnapshotName,
  frozenFromMetaKey,
  type BeginFreezeOptions,
  type CompleteFreezeOptions,
  type FreezeResult,
} from "./freeze.ts";
