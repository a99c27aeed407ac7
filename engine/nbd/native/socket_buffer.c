// The NBD server's one socket option Node does not offer: the kernel send buffer of a
// connection (SO_SNDBUF). A unix socket's default (net.core.wmem_default, ~208 KiB) takes a
// 1 MiB READ reply in about five writes, each waiting for the client to drain the last, with
// a wake-up of the event loop in between; 4 MiB takes it in one (bench/RESULTS.md, nbd run 12).
// Node-API in C: no C++ runtime, ABI-stable across Node versions. Optional: without this
// addon the server runs with the kernel's default (engine/nbd/socket-buffer.ts).
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

// Throws an Error whose `code` is the errno's name, as Node's own system errors do.
static napi_value ThrowErrno(napi_env env, const char* call, int error) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", call, strerror(error));
  const char* name = strerrorname_np(error);
  napi_throw_error(env, name == NULL ? "EUNKNOWN" : name, message);
  return NULL;
}

static int ArgumentInt(napi_env env, napi_callback_info info, size_t index, int64_t* out) {
  size_t count = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &count, argv, NULL, NULL) != napi_ok || count <= index) return 0;
  return napi_get_value_int64(env, argv[index], out) == napi_ok;
}

static napi_value SendBufferBytesOf(napi_env env, int fd) {
  int bytes = 0;
  socklen_t length = sizeof bytes;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, &length) != 0) return ThrowErrno(env, "getsockopt(SO_SNDBUF)", errno);
  napi_value result;
  napi_create_int64(env, bytes, &result);
  return result;
}

// getSendBufferBytes(fd): the socket's send buffer as the kernel accounts it.
static napi_value GetSendBufferBytes(napi_env env, napi_callback_info info) {
  int64_t fd;
  if (!ArgumentInt(env, info, 0, &fd) || fd < 0 || fd > 0x7fffffff) {
    napi_throw_type_error(env, "EINVAL", "getSendBufferBytes(fd): fd must be a non-negative integer");
    return NULL;
  }
  return SendBufferBytesOf(env, (int)fd);
}

// setSendBufferBytes(fd, requested): asks for `requested` bytes (the kernel doubles the value
// for its own bookkeeping) and returns what the socket then has. SO_SNDBUFFORCE first, which
// may exceed net.core.wmem_max but needs CAP_NET_ADMIN; without it, SO_SNDBUF, which the
// kernel caps at wmem_max.
static napi_value SetSendBufferBytes(napi_env env, napi_callback_info info) {
  int64_t fd, requested;
  if (!ArgumentInt(env, info, 0, &fd) || !ArgumentInt(env, info, 1, &requested) || fd < 0 || fd > 0x7fffffff || requested <= 0 ||
      requested > 0x3fffffff) {
    napi_throw_type_error(env, "EINVAL", "setSendBufferBytes(fd, bytes): fd ≥ 0 and 0 < bytes < 1 GiB");
    return NULL;
  }
  int value = (int)requested;
  if (setsockopt((int)fd, SOL_SOCKET, SO_SNDBUFFORCE, &value, sizeof value) != 0) {
    if (errno != EPERM) return ThrowErrno(env, "setsockopt(SO_SNDBUFFORCE)", errno);
    if (setsockopt((int)fd, SOL_SOCKET, SO_SNDBUF, &value, sizeof value) != 0) return ThrowErrno(env, "setsockopt(SO_SNDBUF)", errno);
  }
  return SendBufferBytesOf(env, (int)fd);
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"getSendBufferBytes", NULL, GetSendBufferBytes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setSendBufferBytes", NULL, SetSendBufferBytes, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}
