/** What serve/ imports from the compute API. */
export { computePlugin, type ComputePluginOptions } from "./plugin.ts";
export { microversionMax, microversionMin } from "./microversion.ts";
export { requestBodyBytesMax } from "./input.ts";
export type { ConsoleTokenResolver } from "../console-proxy.ts";
