/** The volume API plugin and its parsers (for serve/ and the fuzz tests). */
export { volumePlugin, type VolumePluginOptions } from "./plugin.ts";
export { requestBodyBytesMax } from "./input.ts";
