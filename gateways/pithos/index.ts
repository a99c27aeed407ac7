/** What serve/ and the other gateways import from the object store. */
export { objectStoreUrlRewriter, pithosPlugin, type PithosPluginOptions } from "./plugin.ts";
export { publicPlugin } from "./public.ts";
export { PithosService, fileMapPrefix, type StoredVersion, type VersionFields } from "./service.ts";
