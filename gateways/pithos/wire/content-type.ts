/**
 * The Content-Type of a PUT without one: guessed from the name's extension (swift.md 5, 11.7).
 * The swift CLI never sends a Content-Type, so this guess is what its users see.
 *
 * Swift calls Python's mimetypes.guess_type and stores the bare type: `.txt` → `text/plain`, no
 * charset. We use the `mime-types` database (mime-db) instead of Python's table plus the host's
 * /etc/mime.types, which Swift's answer also depends on; common extensions agree. One known
 * difference: Python treats `.gz`/`.bz2`/`.xz` as encodings (`a.tar.gz` → `application/x-tar`,
 * `a.gz` → nothing), mime-db types them (`application/gzip`).
 */
import mime from "mime-types";

/** Swift's fallback for names without a known extension. */
export const defaultContentType = "application/octet-stream";

/** Pithos+/swiftclient's type for directory markers (swift.md 5). */
export const directoryContentType = "application/directory";

/**
 * The type for an object name. The extension is that of the last path segment (`a.d/b` has
 * none; `photos.jpg/` has none, as Python's splitext sees it, though Node's extname would say
 * `.jpg`). Extensions are matched case-insensitively (`.JPG` → image/jpeg), as Python does.
 */
export function guessContentType(objectName: string): string {
  const lastSegment = objectName.slice(objectName.lastIndexOf("/") + 1);
  const dot = lastSegment.lastIndexOf(".");
  // A leading dot is a hidden file's name, not an extension (posixpath.splitext).
  if (dot <= 0 || /^\.+$/.test(lastSegment.slice(0, dot + 1))) return defaultContentType;
  const type = mime.lookup(lastSegment.slice(dot + 1).toLowerCase());
  return type === false ? defaultContentType : type;
}
