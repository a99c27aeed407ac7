/** The object level's method table (plugin.ts dispatches to it). */
import { readObject } from "./object-read.ts";
import { copyVerb, deleteObjectRoute, postObject, putObject } from "./object-write.ts";

export const objectRoutes = {
  GET: readObject,
  HEAD: readObject,
  PUT: putObject,
  POST: postObject,
  DELETE: deleteObjectRoute,
  COPY: copyVerb,
  MOVE: copyVerb,
};
