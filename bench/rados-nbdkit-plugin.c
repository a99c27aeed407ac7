/*
 * bench/rados's fourth side: the smallest NBD server in front of Ceph we could write, an
 * nbdkit plugin on plain librados. The export is a row of 4 MiB RADOS objects
 * "PREFIX.%016x" (no map, no snapshots, no locks, no copy-on-write); nbdkit's threads call
 * librados' synchronous read and write, a write returning once the OSD has it on disk, so
 * flush has nothing to wait for. It prices an NBD server on librados with nothing of
 * okeanos' own work in it. Built by bench/rados-targets.ts with gcc and nbdkit's headers
 * (Debian: nbdkit-plugin-dev, librados-dev).
 *
 *   nbdkit -U SOCK ./plugin.so conf=CEPH_CONF pool=POOL prefix=NAME size=BYTES
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>
#include <rados/librados.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static const uint32_t object_bytes = 4u << 20;

static const char *ceph_conf;
static const char *pool;
static const char *prefix;
static int64_t size_bytes = -1;
static rados_t cluster;
static rados_ioctx_t ioctx;

static int rados_mini_config(const char *key, const char *value) {
  if (strcmp(key, "conf") == 0) ceph_conf = value;
  else if (strcmp(key, "pool") == 0) pool = value;
  else if (strcmp(key, "prefix") == 0) prefix = value;
  else if (strcmp(key, "size") == 0) {
    if ((size_bytes = nbdkit_parse_size(value)) < 0) return -1;
  } else {
    nbdkit_error("unknown parameter %s", key);
    return -1;
  }
  return 0;
}

static int rados_mini_config_complete(void) {
  if (ceph_conf == NULL || pool == NULL || prefix == NULL || size_bytes < 0) {
    nbdkit_error("conf, pool, prefix and size are required");
    return -1;
  }
  return 0;
}

/* After nbdkit forks into the background, if it does: librados starts threads, which a fork would lose. */
static int rados_mini_after_fork(void) {
  int r = rados_create(&cluster, NULL);
  if (r == 0) r = rados_conf_read_file(cluster, ceph_conf);
  if (r == 0) r = rados_connect(cluster);
  if (r == 0) r = rados_ioctx_create(cluster, pool, &ioctx);
  if (r < 0) nbdkit_error("connecting to pool %s with %s: %s", pool, ceph_conf, strerror(-r));
  return r < 0 ? -1 : 0;
}

static void *rados_mini_open(int readonly) {
  (void)readonly;
  return NBDKIT_HANDLE_NOT_NEEDED;
}

static int64_t rados_mini_get_size(void *handle) {
  (void)handle;
  return size_bytes;
}

/* The object holding byte `offset`, and how much of [offset, offset + count) lies in it. */
static uint32_t locate(uint64_t offset, uint32_t count, char *name, size_t name_size, uint64_t *in_object) {
  *in_object = offset % object_bytes;
  snprintf(name, name_size, "%s.%016" PRIx64, prefix, offset / object_bytes);
  uint64_t room = object_bytes - *in_object;
  return count < room ? count : (uint32_t)room;
}

static int rados_mini_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags) {
  (void)handle, (void)flags;
  char name[256];
  for (uint64_t in_object; count > 0;) {
    uint32_t piece = locate(offset, count, name, sizeof name, &in_object);
    int r = rados_read(ioctx, name, buf, piece, in_object);
    if (r == -ENOENT) r = 0; /* never written: zeros */
    if (r < 0) {
      nbdkit_error("read %s: %s", name, strerror(-r));
      errno = -r;
      return -1;
    }
    memset((char *)buf + r, 0, piece - (uint32_t)r);
    buf = (char *)buf + piece, offset += piece, count -= piece;
  }
  return 0;
}

static int rados_mini_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset, uint32_t flags) {
  (void)handle, (void)flags;
  char name[256];
  for (uint64_t in_object; count > 0;) {
    uint32_t piece = locate(offset, count, name, sizeof name, &in_object);
    int r = piece == object_bytes ? rados_write_full(ioctx, name, buf, piece) : rados_write(ioctx, name, buf, piece, in_object);
    if (r < 0) {
      nbdkit_error("write %s: %s", name, strerror(-r));
      errno = -r;
      return -1;
    }
    buf = (const char *)buf + piece, offset += piece, count -= piece;
  }
  return 0;
}

/* Every write above returned after the OSD committed it. */
static int rados_mini_flush(void *handle, uint32_t flags) {
  (void)handle, (void)flags;
  return 0;
}

static void rados_mini_unload(void) {
  if (ioctx != NULL) rados_ioctx_destroy(ioctx);
  if (cluster != NULL) rados_shutdown(cluster);
}

static struct nbdkit_plugin plugin = {
  .name = "okeanos-bench-rados",
  .config = rados_mini_config,
  .config_complete = rados_mini_config_complete,
  .after_fork = rados_mini_after_fork,
  .unload = rados_mini_unload,
  .open = rados_mini_open,
  .get_size = rados_mini_get_size,
  .pread = rados_mini_pread,
  .pwrite = rados_mini_pwrite,
  .flush = rados_mini_flush,
};

NBDKIT_REGISTER_PLUGIN(plugin)
