// okeanos_rados: a small N-API binding to librados' C API, for engine/blocker/rados.
//
// Storage operations are asynchronous only: each is submitted with rados_aio_* and returns
// a Promise. librados completes it on its finisher thread, which only queues the context
// on the cluster's TypedThreadSafeFunction (NonBlockingCall: the finisher never waits for
// JavaScript, unlike FFI callbacks — ../shared/notes/ceph.md §2); the JS thread then settles
// the promise. Reads land in the caller's Buffer (zero copy). What librados offers only
// synchronously (connect, ioctx create, shutdown, blocklist) runs on libuv's thread pool.
//
//   connect({conf?, id?, keyring?, options?})     → Promise<Cluster>
//   tuneMalloc(mmapThreshold, trimThreshold)      → boolean (glibc's mallopt)
//   exitNow(code)                                 → never returns (_exit)
//   Cluster.openPool(pool, namespace)             → Promise<Pool>
//   Cluster.confGet(key) → string, instanceId() → number, address() → string
//   Cluster.blocklist(address, seconds)           → Promise<void>
//   Cluster.shutdown()                            → Promise<void> (no pools open, nothing pending)
//   Pool.read(oid, offset, target)                → Promise<bytes read>  (rados_aio_read)
//   Pool.writeOp(oid, steps)                      → Promise<void>        (one atomic write op)
//   Pool.readOp(oid, steps)                       → Promise<results>     (one read op)
//   Pool.remove(oid), Pool.flush()                → Promise<void>
//   Pool.close()                                  (nothing pending)
//
// Steps are arrays, [name, ...arguments]; native.ts documents each. Failures reject with an
// Error carrying `errno` (positive, as in errno.h) and `op`.
#include <napi.h>
#include <rados/librados.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <ctime>
#include <memory>
#include <string>
#include <vector>

namespace {

struct OpContext;
void DeliverCompletion(Napi::Env env, Napi::Function, void*, OpContext* op);
using CompletionQueue = Napi::TypedThreadSafeFunction<void, OpContext, DeliverCompletion>;

Napi::Error ErrnoError(Napi::Env env, const std::string& op, int rc) {
  int code = rc < 0 ? -rc : rc;
  Napi::Error error = Napi::Error::New(env, op + ": " + std::strerror(code) + " (errno " + std::to_string(code) + ")");
  error.Set("errno", Napi::Number::New(env, code));
  error.Set("op", Napi::String::New(env, op));
  return error;
}

std::string StringArgument(const Napi::Value& value, const char* what) {
  if (!value.IsString()) throw Napi::TypeError::New(value.Env(), std::string(what) + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

uint64_t IntegerArgument(const Napi::Value& value, const char* what) {
  if (!value.IsNumber()) throw Napi::TypeError::New(value.Env(), std::string(what) + " must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0) || number > 9007199254740991.0 || number != static_cast<double>(static_cast<uint64_t>(number))) {
    throw Napi::RangeError::New(value.Env(), std::string(what) + " must be a non-negative safe integer");
  }
  return static_cast<uint64_t>(number);
}

Napi::Uint8Array BytesArgument(const Napi::Value& value, const char* what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(value.Env(), std::string(what) + " must be a Buffer or Uint8Array");
  }
  return value.As<Napi::Uint8Array>();
}

class Cluster;
class Pool;

struct InstanceData {
  Napi::FunctionReference clusterConstructor;
  Napi::FunctionReference poolConstructor;
};

enum class OpKind { Read, WriteOp, ReadOp, Remove, Flush };

/** What one read-op step fills in when the op completes; `prval` is that step's own result. */
struct ReadStep {
  enum Kind { Stat, Read, OmapGetVals, Exec, AssertExists, Version } kind = AssertExists;
  int prval = 0;
  uint64_t sizeBytes = 0;
  time_t mtimeSeconds = 0;
  size_t bytesRead = 0;
  rados_omap_iter_t omap = nullptr;
  unsigned char more = 0;
  char* execOutput = nullptr;
  size_t execOutputBytes = 0;
};

/** One operation in flight: owned by whoever holds it (submitter, then librados, then the JS thread). */
struct OpContext {
  OpContext(Napi::Env env, Cluster* cluster, OpKind kind, std::string what)
      : deferred(Napi::Promise::Deferred::New(env)), cluster(cluster), kind(kind), what(std::move(what)) {}
  ~OpContext();

  Napi::Promise::Deferred deferred;
  Cluster* cluster;
  OpKind kind;
  std::string what;
  /** The Pool object and caller's target buffers: kept alive until the op completes. */
  Napi::ObjectReference pool;
  std::vector<Napi::Reference<Napi::Uint8Array>> targets;
  rados_completion_t completion = nullptr;
  rados_write_op_t writeOp = nullptr;
  rados_read_op_t readOp = nullptr;
  /** Sized once before the op is built: librados keeps pointers into it. */
  std::unique_ptr<ReadStep[]> readSteps;
  size_t readStepCount = 0;
  int rc = 0;
  /** The object's version after the op (rados_aio_get_version), read on completion. */
  uint64_t version = 0;
};

OpContext::~OpContext() {
  for (size_t index = 0; index < readStepCount; index++) {
    if (readSteps[index].omap != nullptr) rados_omap_get_end(readSteps[index].omap);
    if (readSteps[index].execOutput != nullptr) rados_buffer_free(readSteps[index].execOutput);
  }
  if (writeOp != nullptr) rados_release_write_op(writeOp);
  if (readOp != nullptr) rados_release_read_op(readOp);
  if (completion != nullptr) rados_aio_release(completion);
}

class Cluster : public Napi::ObjectWrap<Cluster> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Cluster",
                       {InstanceMethod<&Cluster::OpenPool>("openPool"), InstanceMethod<&Cluster::ConfGet>("confGet"),
                        InstanceMethod<&Cluster::InstanceId>("instanceId"), InstanceMethod<&Cluster::Address>("address"),
                        InstanceMethod<&Cluster::Blocklist>("blocklist"), InstanceMethod<&Cluster::Shutdown>("shutdown"),
                        InstanceAccessor<&Cluster::Pending>("pending")});
  }

  explicit Cluster(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Cluster>(info) {
    handle_ = *info[0].As<Napi::External<rados_t>>().Data();
    queue_ = CompletionQueue::New(info.Env(), "okeanos rados completions", 0, 1);
    queue_.Unref(info.Env());
  }

  rados_t handle() const { return handle_; }
  bool closed() const { return closed_; }

  /** Called on the JS thread before an op is handed to librados. */
  void Submitted(Napi::Env env) {
    // Ref'd while anything is pending: a completion from a librados thread does not keep
    // the event loop alive by itself (notes §2, koffi rule 1).
    if (pending_++ == 0) queue_.Ref(env);
  }

  /** Called on the JS thread once an op has been settled (or failed to submit). */
  void Finished(Napi::Env env) {
    if (--pending_ == 0) queue_.Unref(env);
  }

  /**
   * librados' finisher thread: hand the op to the JS thread, never block. The call fails
   * only once the queue is closing — the JS environment is exiting with ops in flight
   * (shutdown() refuses while any is pending) — and the op is then left to the exit.
   */
  void Complete(OpContext* op) { (void)queue_.NonBlockingCall(op); }

  void PoolOpened() { pools_++; }
  void PoolClosed() { pools_--; }

 private:
  Napi::Value OpenPool(const Napi::CallbackInfo& info);
  Napi::Value Shutdown(const Napi::CallbackInfo& info);
  Napi::Value Blocklist(const Napi::CallbackInfo& info);

  Napi::Value ConfGet(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    std::string key = StringArgument(info[0], "key");
    char value[4096];
    int rc = rados_conf_get(handle_, key.c_str(), value, sizeof value);
    if (rc < 0) throw ErrnoError(info.Env(), "conf get " + key, rc);
    return Napi::String::New(info.Env(), value);
  }

  Napi::Value InstanceId(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    return Napi::Number::New(info.Env(), static_cast<double>(rados_get_instance_id(handle_)));
  }

  Napi::Value Address(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    char* addresses = nullptr;
    int rc = rados_getaddrs(handle_, &addresses);
    if (rc < 0) throw ErrnoError(info.Env(), "getaddrs", rc);
    Napi::String result = Napi::String::New(info.Env(), addresses);
    rados_buffer_free(addresses);
    return result;
  }

  Napi::Value Pending(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(pending_)); }

  void CheckOpen(Napi::Env env) {
    if (closed_) throw Napi::Error::New(env, "the rados connection is shut down");
  }

  rados_t handle_ = nullptr;
  CompletionQueue queue_;
  size_t pending_ = 0;
  size_t pools_ = 0;
  bool closed_ = false;
};

void OnRadosComplete(rados_completion_t, void* argument) {
  auto* op = static_cast<OpContext*>(argument);
  op->rc = rados_aio_get_return_value(op->completion);
  op->version = rados_aio_get_version(op->completion);
  op->cluster->Complete(op);
}

Napi::Value ReadStepResult(Napi::Env env, ReadStep& step, uint64_t version) {
  switch (step.kind) {
    case ReadStep::Version:
      return Napi::Number::New(env, static_cast<double>(version));
    case ReadStep::Stat: {
      Napi::Object result = Napi::Object::New(env);
      result.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(step.sizeBytes)));
      result.Set("mtimeSeconds", Napi::Number::New(env, static_cast<double>(step.mtimeSeconds)));
      return result;
    }
    case ReadStep::Read:
      return Napi::Number::New(env, static_cast<double>(step.bytesRead));
    case ReadStep::OmapGetVals: {
      Napi::Array keys = Napi::Array::New(env);
      Napi::Array values = Napi::Array::New(env);
      uint32_t count = 0;
      for (;;) {
        char* key = nullptr;
        char* value = nullptr;
        size_t keyBytes = 0;
        size_t valueBytes = 0;
        if (rados_omap_get_next2(step.omap, &key, &value, &keyBytes, &valueBytes) < 0 || key == nullptr) break;
        keys.Set(count, Napi::String::New(env, key, keyBytes));
        values.Set(count, Napi::Buffer<char>::Copy(env, value, valueBytes));
        count++;
      }
      Napi::Object result = Napi::Object::New(env);
      result.Set("keys", keys);
      result.Set("values", values);
      result.Set("more", Napi::Boolean::New(env, step.more != 0));
      return result;
    }
    case ReadStep::Exec:
      return Napi::Buffer<char>::Copy(env, step.execOutput, step.execOutputBytes);
    case ReadStep::AssertExists:
      break;
  }
  return env.Undefined();
}

/** The JS thread: settle the op's promise, release everything it held. */
void DeliverCompletion(Napi::Env env, Napi::Function, void*, OpContext* raw) {
  std::unique_ptr<OpContext> op(raw);
  if (env == nullptr) {
    // The environment is exiting with this op in flight: free librados' side, leave the JS
    // references to the exit (deleting them needs a live environment).
    op->pool.SuppressDestruct();
    for (auto& target : op->targets) target.SuppressDestruct();
    return;
  }
  Napi::HandleScope scope(env);
  Cluster* cluster = op->cluster;
  try {
    if (op->rc < 0) {
      op->deferred.Reject(ErrnoError(env, op->what, op->rc).Value());
    } else if (op->kind == OpKind::Read) {
      op->deferred.Resolve(Napi::Number::New(env, op->rc));
    } else if (op->kind == OpKind::ReadOp) {
      Napi::Array results = Napi::Array::New(env, op->readStepCount);
      for (size_t index = 0; index < op->readStepCount; index++) {
        ReadStep& step = op->readSteps[index];
        if (step.prval < 0) {
          results.Set(static_cast<uint32_t>(index), ErrnoError(env, op->what, step.prval).Value());
        } else {
          results.Set(static_cast<uint32_t>(index), ReadStepResult(env, step, op->version));
        }
      }
      op->deferred.Resolve(results);
    } else {
      op->deferred.Resolve(env.Undefined());
    }
  } catch (const Napi::Error& error) {
    op->deferred.Reject(error.Value());
  }
  op.reset();
  cluster->Finished(env);
}

class Pool : public Napi::ObjectWrap<Pool> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Pool",
                       {InstanceMethod<&Pool::Read>("read"), InstanceMethod<&Pool::WriteOp>("writeOp"),
                        InstanceMethod<&Pool::ReadOp>("readOp"), InstanceMethod<&Pool::Remove>("remove"),
                        InstanceMethod<&Pool::Flush>("flush"), InstanceMethod<&Pool::Close>("close")});
  }

  explicit Pool(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Pool>(info) {
    cluster_ = Napi::ObjectWrap<Cluster>::Unwrap(info[0].As<Napi::Object>());
    clusterObject_ = Napi::Persistent(info[0].As<Napi::Object>());
    io_ = *info[1].As<Napi::External<rados_ioctx_t>>().Data();
    cluster_->PoolOpened();
  }

  ~Pool() override {
    // Pending ops hold a reference to this object, so none is in flight here.
    if (io_ != nullptr) {
      rados_ioctx_destroy(io_);
      cluster_->PoolClosed();
    }
  }

 private:
  void CheckOpen(Napi::Env env) {
    if (io_ == nullptr) throw Napi::Error::New(env, "the rados pool handle is closed");
  }

  std::unique_ptr<OpContext> NewOp(const Napi::CallbackInfo& info, OpKind kind, std::string what) {
    CheckOpen(info.Env());
    auto op = std::make_unique<OpContext>(info.Env(), cluster_, kind, std::move(what));
    op->pool = Napi::Persistent(info.This().As<Napi::Object>());
    return op;
  }

  /** Hands the op to librados via `submit`; on a submit error the promise rejects at once. */
  template <typename Submit>
  Napi::Value Start(Napi::Env env, std::unique_ptr<OpContext> op, Submit submit) {
    int rc = rados_aio_create_completion2(op.get(), OnRadosComplete, &op->completion);
    if (rc < 0) throw ErrnoError(env, op->what, rc);
    Napi::Promise promise = op->deferred.Promise();
    cluster_->Submitted(env);
    rc = submit(op.get());
    if (rc < 0) {
      op->deferred.Reject(ErrnoError(env, op->what, rc).Value());
      op.reset();
      cluster_->Finished(env);
    } else {
      op.release();  // librados owns it until OnRadosComplete
    }
    return promise;
  }

  /** read(oid, offset, target): reads target.length bytes into target; resolves to the bytes read. */
  Napi::Value Read(const Napi::CallbackInfo& info) {
    std::string oid = StringArgument(info[0], "oid");
    uint64_t offset = IntegerArgument(info[1], "offset");
    Napi::Uint8Array target = BytesArgument(info[2], "target");
    auto op = NewOp(info, OpKind::Read, "read " + oid);
    op->targets.push_back(Napi::Persistent(target));
    char* data = reinterpret_cast<char*>(target.Data());
    size_t length = target.ByteLength();
    rados_ioctx_t io = io_;
    return Start(info.Env(), std::move(op), [&](OpContext* ctx) { return rados_aio_read(io, oid.c_str(), ctx->completion, data, length, offset); });
  }

  /** writeOp(oid, steps): one compound write, atomic on the OSD. */
  Napi::Value WriteOp(const Napi::CallbackInfo& info) {
    std::string oid = StringArgument(info[0], "oid");
    if (!info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "steps must be an array");
    Napi::Array steps = info[1].As<Napi::Array>();
    auto op = NewOp(info, OpKind::WriteOp, "write " + oid);
    op->writeOp = rados_create_write_op();
    for (uint32_t index = 0; index < steps.Length(); index++) AddWriteStep(info.Env(), op->writeOp, steps.Get(index));
    rados_ioctx_t io = io_;
    return Start(info.Env(), std::move(op), [&](OpContext* ctx) {
      return rados_aio_write_op_operate(ctx->writeOp, io, ctx->completion, oid.c_str(), nullptr, LIBRADOS_OPERATION_NOFLAG);
    });
  }

  /** readOp(oid, steps): one compound read; resolves to one result per step. */
  Napi::Value ReadOp(const Napi::CallbackInfo& info) {
    std::string oid = StringArgument(info[0], "oid");
    if (!info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "steps must be an array");
    Napi::Array steps = info[1].As<Napi::Array>();
    auto op = NewOp(info, OpKind::ReadOp, "read " + oid);
    op->readOp = rados_create_read_op();
    op->readStepCount = steps.Length();
    op->readSteps = std::make_unique<ReadStep[]>(op->readStepCount);
    for (uint32_t index = 0; index < steps.Length(); index++) AddReadStep(info.Env(), *op, index, steps.Get(index));
    rados_ioctx_t io = io_;
    return Start(info.Env(), std::move(op), [&](OpContext* ctx) {
      return rados_aio_read_op_operate(ctx->readOp, io, ctx->completion, oid.c_str(), LIBRADOS_OPERATION_NOFLAG);
    });
  }

  Napi::Value Remove(const Napi::CallbackInfo& info) {
    std::string oid = StringArgument(info[0], "oid");
    auto op = NewOp(info, OpKind::Remove, "remove " + oid);
    rados_ioctx_t io = io_;
    return Start(info.Env(), std::move(op), [&](OpContext* ctx) { return rados_aio_remove(io, oid.c_str(), ctx->completion); });
  }

  /** flush(): resolves once every write submitted on this pool handle before it is complete. */
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    auto op = NewOp(info, OpKind::Flush, "flush");
    rados_ioctx_t io = io_;
    return Start(info.Env(), std::move(op), [&](OpContext* ctx) { return rados_aio_flush_async(io, ctx->completion); });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (io_ != nullptr) {
      rados_ioctx_destroy(io_);
      io_ = nullptr;
      cluster_->PoolClosed();
      clusterObject_.Reset();
    }
    return info.Env().Undefined();
  }

  static void AddWriteStep(Napi::Env env, rados_write_op_t op, Napi::Value value) {
    if (!value.IsArray()) throw Napi::TypeError::New(env, "a step must be an array");
    Napi::Array step = value.As<Napi::Array>();
    std::string name = StringArgument(step.Get(0u), "step name");
    if (name == "assertExists") {
      rados_write_op_assert_exists(op);
    } else if (name == "assertVersion") {
      // Fails the op with ERANGE (object newer) or EOVERFLOW (older) unless it is at this version.
      rados_write_op_assert_version(op, IntegerArgument(step.Get(1u), "version"));
    } else if (name == "create") {
      rados_write_op_create(op, step.Get(1u).ToBoolean() ? LIBRADOS_CREATE_EXCLUSIVE : LIBRADOS_CREATE_IDEMPOTENT, nullptr);
    } else if (name == "write") {
      uint64_t offset = IntegerArgument(step.Get(1u), "offset");
      Napi::Uint8Array data = BytesArgument(step.Get(2u), "data");
      // The C API copies the bytes into the op's bufferlist here.
      rados_write_op_write(op, reinterpret_cast<const char*>(data.Data()), data.ByteLength(), offset);
    } else if (name == "writeFull") {
      Napi::Uint8Array data = BytesArgument(step.Get(1u), "data");
      rados_write_op_write_full(op, reinterpret_cast<const char*>(data.Data()), data.ByteLength());
    } else if (name == "truncate") {
      rados_write_op_truncate(op, IntegerArgument(step.Get(1u), "size"));
    } else if (name == "zero") {
      rados_write_op_zero(op, IntegerArgument(step.Get(1u), "offset"), IntegerArgument(step.Get(2u), "length"));
    } else if (name == "remove") {
      rados_write_op_remove(op);
    } else if (name == "omapSet" || name == "omapRm") {
      if (!step.Get(1u).IsArray()) throw Napi::TypeError::New(env, "omap keys must be an array");
      Napi::Array keyArray = step.Get(1u).As<Napi::Array>();
      std::vector<std::string> keys;
      for (uint32_t index = 0; index < keyArray.Length(); index++) keys.push_back(StringArgument(keyArray.Get(index), "omap key"));
      std::vector<const char*> keyPointers;
      std::vector<size_t> keyLengths;
      for (const std::string& key : keys) {
        keyPointers.push_back(key.data());
        keyLengths.push_back(key.size());
      }
      if (name == "omapRm") {
        rados_write_op_omap_rm_keys2(op, keyPointers.data(), keyLengths.data(), keys.size());
        return;
      }
      if (!step.Get(2u).IsArray()) throw Napi::TypeError::New(env, "omap values must be an array");
      Napi::Array valueArray = step.Get(2u).As<Napi::Array>();
      if (valueArray.Length() != keys.size()) throw Napi::RangeError::New(env, "as many omap values as keys");
      std::vector<const char*> valuePointers;
      std::vector<size_t> valueLengths;
      for (uint32_t index = 0; index < valueArray.Length(); index++) {
        Napi::Uint8Array bytes = BytesArgument(valueArray.Get(index), "omap value");
        valuePointers.push_back(reinterpret_cast<const char*>(bytes.Data()));
        valueLengths.push_back(bytes.ByteLength());
      }
      rados_write_op_omap_set2(op, keyPointers.data(), valuePointers.data(), keyLengths.data(), valueLengths.data(), keys.size());
    } else if (name == "omapCmp") {
      std::string key = StringArgument(step.Get(1u), "omap key");
      Napi::Uint8Array bytes = BytesArgument(step.Get(2u), "omap value");
      // A mismatch fails the whole op with ECANCELED; the per-step value is not needed.
      rados_write_op_omap_cmp2(op, key.data(), LIBRADOS_CMPXATTR_OP_EQ, reinterpret_cast<const char*>(bytes.Data()), key.size(),
                               bytes.ByteLength(), nullptr);
    } else if (name == "cmpxattr" || name == "setxattr") {
      std::string key = StringArgument(step.Get(1u), "xattr name");
      Napi::Uint8Array bytes = BytesArgument(step.Get(2u), "xattr value");
      const char* data = reinterpret_cast<const char*>(bytes.Data());
      if (name == "cmpxattr") {
        rados_write_op_cmpxattr(op, key.c_str(), LIBRADOS_CMPXATTR_OP_EQ, data, bytes.ByteLength());
      } else {
        rados_write_op_setxattr(op, key.c_str(), data, bytes.ByteLength());
      }
    } else if (name == "exec") {
      std::string cls = StringArgument(step.Get(1u), "class");
      std::string method = StringArgument(step.Get(2u), "method");
      Napi::Uint8Array input = BytesArgument(step.Get(3u), "input");
      rados_write_op_exec(op, cls.c_str(), method.c_str(), reinterpret_cast<const char*>(input.Data()), input.ByteLength(), nullptr);
    } else {
      throw Napi::TypeError::New(env, "unknown write step " + name);
    }
  }

  static void AddReadStep(Napi::Env env, OpContext& ctx, uint32_t index, Napi::Value value) {
    if (!value.IsArray()) throw Napi::TypeError::New(env, "a step must be an array");
    Napi::Array step = value.As<Napi::Array>();
    std::string name = StringArgument(step.Get(0u), "step name");
    ReadStep& result = ctx.readSteps[index];
    rados_read_op_t op = ctx.readOp;
    if (name == "assertExists") {
      result.kind = ReadStep::AssertExists;
      rados_read_op_assert_exists(op);
    } else if (name == "version") {
      // Not a RADOS step: the object's version as of this op, for a later assertVersion.
      result.kind = ReadStep::Version;
    } else if (name == "stat") {
      result.kind = ReadStep::Stat;
      rados_read_op_stat(op, &result.sizeBytes, &result.mtimeSeconds, &result.prval);
    } else if (name == "read") {
      result.kind = ReadStep::Read;
      uint64_t offset = IntegerArgument(step.Get(1u), "offset");
      Napi::Uint8Array target = BytesArgument(step.Get(2u), "target");
      ctx.targets.push_back(Napi::Persistent(target));
      rados_read_op_read(op, offset, target.ByteLength(), reinterpret_cast<char*>(target.Data()), &result.bytesRead, &result.prval);
    } else if (name == "omapGetVals") {
      result.kind = ReadStep::OmapGetVals;
      std::string startAfter = StringArgument(step.Get(1u), "start after");
      std::string prefix = StringArgument(step.Get(2u), "prefix");
      uint64_t max = IntegerArgument(step.Get(3u), "max");
      // The C API copies both strings into the op.
      rados_read_op_omap_get_vals2(op, startAfter.c_str(), prefix.c_str(), max, &result.omap, &result.more, &result.prval);
    } else if (name == "exec") {
      result.kind = ReadStep::Exec;
      std::string cls = StringArgument(step.Get(1u), "class");
      std::string method = StringArgument(step.Get(2u), "method");
      Napi::Uint8Array input = BytesArgument(step.Get(3u), "input");
      rados_read_op_exec(op, cls.c_str(), method.c_str(), reinterpret_cast<const char*>(input.Data()), input.ByteLength(), &result.execOutput,
                         &result.execOutputBytes, &result.prval);
    } else {
      throw Napi::TypeError::New(env, "unknown read step " + name);
    }
  }

  Cluster* cluster_ = nullptr;
  Napi::ObjectReference clusterObject_;
  rados_ioctx_t io_ = nullptr;
};

/** Runs a blocking librados call on libuv's thread pool; OnDone settles the promise on the JS thread. */
class BlockingCall : public Napi::AsyncWorker {
 public:
  BlockingCall(Napi::Env env, std::string what) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), what_(std::move(what)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void OnOK() override {
    Napi::HandleScope scope(Env());
    try {
      if (rc_ < 0) {
        deferred_.Reject(ErrnoError(Env(), what_, rc_).Value());
      } else {
        deferred_.Resolve(Result());
      }
    } catch (const Napi::Error& error) {
      deferred_.Reject(error.Value());
    }
  }
  virtual Napi::Value Result() { return Env().Undefined(); }

  Napi::Promise::Deferred deferred_;
  std::string what_;
  int rc_ = 0;
};

struct ConnectOptions {
  std::string conf;
  std::string id;
  std::string keyring;
  std::vector<std::pair<std::string, std::string>> settings;
};

class ConnectCall : public BlockingCall {
 public:
  ConnectCall(Napi::Env env, ConnectOptions options) : BlockingCall(env, "connect"), options_(std::move(options)) {}

  void Execute() override {
    rados_t cluster = nullptr;
    rc_ = rados_create(&cluster, options_.id.empty() ? nullptr : options_.id.c_str());
    if (rc_ < 0) return;
    // An empty path searches $CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf.
    rc_ = rados_conf_read_file(cluster, options_.conf.empty() ? nullptr : options_.conf.c_str());
    if (rc_ < 0) {
      what_ = "read ceph.conf " + (options_.conf.empty() ? std::string("($CEPH_CONF or /etc/ceph/ceph.conf)") : options_.conf);
    }
    if (rc_ >= 0) rc_ = rados_conf_parse_env(cluster, nullptr);  // CEPH_ARGS
    if (rc_ >= 0 && !options_.keyring.empty()) rc_ = rados_conf_set(cluster, "keyring", options_.keyring.c_str());
    for (const auto& [key, value] : options_.settings) {
      if (rc_ < 0) break;
      rc_ = rados_conf_set(cluster, key.c_str(), value.c_str());
      if (rc_ < 0) what_ = "set " + key + "=" + value;
    }
    if (rc_ >= 0) rc_ = rados_connect(cluster);
    if (rc_ < 0) {
      rados_shutdown(cluster);
      return;
    }
    cluster_ = cluster;
  }

  Napi::Value Result() override {
    auto* data = Env().GetInstanceData<InstanceData>();
    return data->clusterConstructor.New({Napi::External<rados_t>::New(Env(), &cluster_)});
  }

 private:
  ConnectOptions options_;
  rados_t cluster_ = nullptr;
};

class OpenPoolCall : public BlockingCall {
 public:
  OpenPoolCall(Napi::Env env, Napi::Object cluster, rados_t handle, std::string pool, std::string ns)
      : BlockingCall(env, "open pool " + pool), handle_(handle), pool_(std::move(pool)), namespace_(std::move(ns)) {
    cluster_ = Napi::Persistent(cluster);
  }

  void Execute() override {
    rc_ = rados_ioctx_create(handle_, pool_.c_str(), &io_);
    if (rc_ >= 0) rados_ioctx_set_namespace(io_, namespace_.c_str());
  }

  Napi::Value Result() override {
    auto* data = Env().GetInstanceData<InstanceData>();
    return data->poolConstructor.New({cluster_.Value(), Napi::External<rados_ioctx_t>::New(Env(), &io_)});
  }

 private:
  Napi::ObjectReference cluster_;
  rados_t handle_;
  std::string pool_;
  std::string namespace_;
  rados_ioctx_t io_ = nullptr;
};

class ShutdownCall : public BlockingCall {
 public:
  ShutdownCall(Napi::Env env, rados_t handle) : BlockingCall(env, "shutdown"), handle_(handle) {}
  void Execute() override { rados_shutdown(handle_); }

 private:
  rados_t handle_;
};

class BlocklistCall : public BlockingCall {
 public:
  BlocklistCall(Napi::Env env, rados_t handle, std::string address, uint32_t seconds)
      : BlockingCall(env, "blocklist " + address), handle_(handle), address_(std::move(address)), seconds_(seconds) {}
  void Execute() override { rc_ = rados_blocklist_add(handle_, address_.data(), seconds_); }

 private:
  rados_t handle_;
  std::string address_;
  uint32_t seconds_;
};

Napi::Value Cluster::OpenPool(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  auto* call = new OpenPoolCall(info.Env(), info.This().As<Napi::Object>(), handle_, StringArgument(info[0], "pool"),
                                info[1].IsUndefined() ? std::string() : StringArgument(info[1], "namespace"));
  Napi::Promise promise = call->Promise();
  call->Queue();
  return promise;
}

Napi::Value Cluster::Blocklist(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  auto* call = new BlocklistCall(info.Env(), handle_, StringArgument(info[0], "address"), static_cast<uint32_t>(IntegerArgument(info[1], "seconds")));
  Napi::Promise promise = call->Promise();
  call->Queue();
  return promise;
}

Napi::Value Cluster::Shutdown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }
  if (pending_ > 0 || pools_ > 0) {
    throw Napi::Error::New(env, "shutdown with " + std::to_string(pending_) + " ops pending and " + std::to_string(pools_) + " pools open");
  }
  closed_ = true;
  queue_.Release();
  auto* call = new ShutdownCall(env, handle_);
  handle_ = nullptr;
  Napi::Promise promise = call->Promise();
  call->Queue();
  return promise;
}

Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ConnectOptions options;
  if (info[0].IsObject()) {
    Napi::Object object = info[0].As<Napi::Object>();
    if (object.Has("conf") && !object.Get("conf").IsUndefined()) options.conf = StringArgument(object.Get("conf"), "conf");
    if (object.Has("id") && !object.Get("id").IsUndefined()) options.id = StringArgument(object.Get("id"), "id");
    if (object.Has("keyring") && !object.Get("keyring").IsUndefined()) options.keyring = StringArgument(object.Get("keyring"), "keyring");
    if (object.Has("settings") && object.Get("settings").IsObject()) {
      Napi::Object settings = object.Get("settings").As<Napi::Object>();
      Napi::Array keys = settings.GetPropertyNames();
      for (uint32_t index = 0; index < keys.Length(); index++) {
        std::string key = StringArgument(keys.Get(index), "setting name");
        options.settings.emplace_back(key, StringArgument(settings.Get(key), "setting value"));
      }
    }
  }
  auto* call = new ConnectCall(env, std::move(options));
  Napi::Promise promise = call->Promise();
  call->Queue();
  return promise;
}

/**
 * tuneMalloc(mmapThresholdBytes, trimThresholdBytes) → whether it applied (glibc only): see
 * rados.ts (mallocTuning) for why and when.
 */
Napi::Value TuneMalloc(const Napi::CallbackInfo& info) {
  uint64_t mmapThreshold = IntegerArgument(info[0], "mmap threshold");
  uint64_t trimThreshold = IntegerArgument(info[1], "trim threshold");
#if defined(__GLIBC__)
  if (mmapThreshold > INT32_MAX || trimThreshold > INT32_MAX) throw Napi::RangeError::New(info.Env(), "malloc thresholds must fit an int");
  bool applied = mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmapThreshold)) == 1 && mallopt(M_TRIM_THRESHOLD, static_cast<int>(trimThreshold)) == 1;
  return Napi::Boolean::New(info.Env(), applied);
#else
  (void)mmapThreshold;
  (void)trimThreshold;
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// Ends the process at once, skipping atexit handlers and static destructors. Among those is
// libuv's, which joins its thread pool: a connect still waiting there for monitors that do
// not answer would hold an exiting process until client_mount_timeout.
Napi::Value ExitNow(const Napi::CallbackInfo& info) {
  _exit(info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new InstanceData();
  data->clusterConstructor = Napi::Persistent(Cluster::Define(env));
  data->poolConstructor = Napi::Persistent(Pool::Define(env));
  env.SetInstanceData(data);
  exports.Set("connect", Napi::Function::New(env, Connect, "connect"));
  exports.Set("tuneMalloc", Napi::Function::New(env, TuneMalloc, "tuneMalloc"));
  exports.Set("exitNow", Napi::Function::New(env, ExitNow, "exitNow"));
  int major = 0;
  int minor = 0;
  int extra = 0;
  rados_version(&major, &minor, &extra);
  exports.Set("libradosVersion", Napi::String::New(env, std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(extra)));
  return exports;
}

}  // namespace

NODE_API_MODULE(okeanos_rados, Init)
