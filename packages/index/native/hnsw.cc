// AlliDB's binding of hnswlib (the header-only library hnswlib-node ships):
// the same index, the same file format and the same results as hnswlib-node's
// HierarchicalNSW, but vectors cross the boundary as Float32Array memory and
// search results land in caller-owned typed arrays. hnswlib-node reads a
// query element by element through N-API (~80 ns each: ~10 µs of a 128-d
// query) and builds two JS arrays and an object per result.
//
// Everything here runs on the JS thread except readIndex/writeIndex, which
// run on libuv's pool like hnswlib-node's. Unlike hnswlib-node, the binding
// itself refuses what would race with them: any call during a readIndex,
// and any change during a writeIndex (searches may run; the index's owner,
// TenantIndex under UnifiedIndex's lock, makes no change then anyway).
#include <napi.h>

#include <cmath>
#include <memory>
#include <new>
#include <numeric>
#include <queue>
#include <stdexcept>
#include <string>
#include <vector>

#include "hnswlib/hnswlib.h"

namespace {

// hnswlib-node's normalisation for the cosine space, kept identical (float accumulation).
void normalize(std::vector<float>& vec) {
  const float norm = std::sqrt(std::fabs(std::inner_product(vec.begin(), vec.end(), vec.begin(), 0.0f)));
  if (norm > 0.0f) {
    for (float& x : vec) x /= norm;
  }
}

class JsFilter : public hnswlib::BaseFilterFunctor {
 public:
  JsFilter(Napi::Env env, Napi::Function fn) : env_(env), fn_(fn) {}
  bool operator()(hnswlib::labeltype label) override {
    // After a throw the callback is not called again: the search ends
    // quickly and the pending exception reaches the caller.
    if (failed_) return false;
    Napi::Value result = fn_.Call({Napi::Number::New(env_, static_cast<double>(label))});
    if (env_.IsExceptionPending() || result.IsEmpty()) {
      failed_ = true;
      return false;
    }
    return result.ToBoolean().Value();
  }

 private:
  Napi::Env env_;
  Napi::Function fn_;
  bool failed_ = false;
};

class Hnsw;

// A file operation on libuv's pool that settles a promise; the index object
// stays alive until then.
class FileWorker : public Napi::AsyncWorker {
 public:
  FileWorker(Napi::Env env, Hnsw* target, std::string path, Napi::Object owner)
      : Napi::AsyncWorker(env), target_(target), path_(std::move(path)), deferred_(Napi::Promise::Deferred::New(env)) {
    owner_ = Napi::Persistent(owner);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      Run();
    } catch (const std::exception& e) {
      SetError(std::string("hnswlib: ") + e.what());
    }
  }
  void OnOK() override {
    Done(true);
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    Done(false);
    deferred_.Reject(e.Value());
  }

 protected:
  virtual void Run() = 0;          // on the pool
  virtual void Done(bool ok) = 0;  // on the JS thread, before the promise settles
  Hnsw* target_;
  std::string path_;

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference owner_;
};

class SaveWorker : public FileWorker {
 public:
  SaveWorker(Napi::Env env, Hnsw* target, hnswlib::HierarchicalNSW<float>* index, std::string path, Napi::Object owner)
      : FileWorker(env, target, std::move(path), owner), index_(index) {}

 protected:
  void Run() override { index_->saveIndex(path_); }
  void Done(bool ok) override;

 private:
  hnswlib::HierarchicalNSW<float>* index_;
};

class LoadWorker : public FileWorker {
 public:
  LoadWorker(Napi::Env env, Hnsw* target, hnswlib::SpaceInterface<float>* space, std::string path, bool replaceDeleted,
             Napi::Object owner)
      : FileWorker(env, target, std::move(path), owner), space_(space), replaceDeleted_(replaceDeleted) {}

 protected:
  void Run() override { loaded_.reset(new hnswlib::HierarchicalNSW<float>(space_, path_, false, 0, replaceDeleted_)); }
  void Done(bool ok) override;

 private:
  hnswlib::SpaceInterface<float>* space_;
  bool replaceDeleted_;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> loaded_;
};

class Hnsw : public Napi::ObjectWrap<Hnsw> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "Hnsw",
                                      {
                                          InstanceMethod("initIndex", &Hnsw::InitIndex),
                                          InstanceMethod("readIndex", &Hnsw::ReadIndex),
                                          InstanceMethod("writeIndex", &Hnsw::WriteIndex),
                                          InstanceMethod("resizeIndex", &Hnsw::ResizeIndex),
                                          InstanceMethod("addPoint", &Hnsw::AddPoint),
                                          InstanceMethod("markDelete", &Hnsw::MarkDelete),
                                          InstanceMethod("setEf", &Hnsw::SetEf),
                                          InstanceMethod("search", &Hnsw::Search),
                                          InstanceMethod("getCurrentCount", &Hnsw::GetCurrentCount),
                                          InstanceMethod("getMaxElements", &Hnsw::GetMaxElements),
                                          InstanceMethod("getNumDimensions", &Hnsw::GetNumDimensions),
                                      });
    exports.Set("Hnsw", ctor);
    return exports;
  }

  Hnsw(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Hnsw>(info) {
    Napi::Env env = info.Env();
    if (info.Length() != 2 || !info[0].IsString() || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "new Hnsw(space, dimension): space is \"l2\", \"ip\" or \"cosine\"")
          .ThrowAsJavaScriptException();
      return;
    }
    const std::string space = info[0].As<Napi::String>().Utf8Value();
    const int64_t dim = info[1].As<Napi::Number>().Int64Value();
    if (dim <= 0 || dim > 65536) {
      Napi::RangeError::New(env, "dimension must be in 1..65536").ThrowAsJavaScriptException();
      return;
    }
    dim_ = static_cast<size_t>(dim);
    if (space == "l2") {
      space_.reset(new hnswlib::L2Space(dim_));
    } else if (space == "ip") {
      space_.reset(new hnswlib::InnerProductSpace(dim_));
    } else if (space == "cosine") {
      space_.reset(new hnswlib::InnerProductSpace(dim_));
      normalize_ = true;
    } else {
      Napi::TypeError::New(env, "space must be \"l2\", \"ip\" or \"cosine\"").ThrowAsJavaScriptException();
      return;
    }
  }

  void Adopt(std::unique_ptr<hnswlib::HierarchicalNSW<float>> loaded) {
    if (loaded) index_ = std::move(loaded);
    loading_ = false;
  }
  void SaveDone() { saving_--; }

 private:
  size_t dim_ = 0;
  bool normalize_ = false;
  std::unique_ptr<hnswlib::SpaceInterface<float>> space_;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> index_;
  std::vector<float> scratch_;
  // Work on libuv's pool: a readIndex (the index is not to be touched), or
  // writeIndex calls (the index is not to change; searches may run).
  bool loading_ = false;
  int saving_ = 0;

  // Nothing on the pool may be changing the index: no readIndex running.
  bool Idle(Napi::Env env) {
    if (!loading_) return true;
    Napi::Error::New(env, "hnsw: readIndex is running (await it first)").ThrowAsJavaScriptException();
    return false;
  }

  // Nothing on the pool may be reading the index either: no writeIndex running.
  bool Free(Napi::Env env) {
    if (!Idle(env)) return false;
    if (saving_ == 0) return true;
    Napi::Error::New(env, "hnsw: writeIndex is running (await it first)").ThrowAsJavaScriptException();
    return false;
  }

  bool Initialised(Napi::Env env) {
    if (index_) return true;
    Napi::Error::New(env, "hnsw: the index is not initialised (initIndex or readIndex first)").ThrowAsJavaScriptException();
    return false;
  }

  // An initialised index that may be read.
  bool Ready(Napi::Env env) { return Idle(env) && Initialised(env); }

  // An initialised index that may be changed.
  bool Mutable(Napi::Env env) { return Free(env) && Initialised(env); }

  // Runs an hnswlib call; its exception becomes a JavaScript error.
  template <typename F>
  static void Guarded(Napi::Env env, F&& call) {
    try {
      call();
    } catch (const std::exception& e) {
      Napi::Error::New(env, std::string("hnswlib: ") + e.what()).ThrowAsJavaScriptException();
    }
  }

  static bool Count(const Napi::Value& v, const char* what, Napi::Env env, size_t* out) {
    if (!v.IsNumber()) {
      Napi::TypeError::New(env, std::string(what) + " must be a number").ThrowAsJavaScriptException();
      return false;
    }
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d > 4294967295.0 || d != std::floor(d)) {
      Napi::RangeError::New(env, std::string(what) + " must be an integer in 0..2^32-1").ThrowAsJavaScriptException();
      return false;
    }
    *out = static_cast<size_t>(d);
    return true;
  }

  // The vector argument as float memory hnswlib may read: the caller's own
  // bytes, or the normalised copy for the cosine space. Nullptr after a throw.
  const float* VectorArg(const Napi::Value& v, Napi::Env env) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      Napi::TypeError::New(env, "the vector must be a Float32Array").ThrowAsJavaScriptException();
      return nullptr;
    }
    Napi::Float32Array array = v.As<Napi::Float32Array>();
    if (array.ElementLength() != dim_) {
      Napi::RangeError::New(env, "the vector has " + std::to_string(array.ElementLength()) + " dimensions, the index " +
                                     std::to_string(dim_))
          .ThrowAsJavaScriptException();
      return nullptr;
    }
    const float* data = array.Data();
    if (!normalize_) return data;
    scratch_.assign(data, data + dim_);
    normalize(scratch_);
    return scratch_.data();
  }

  Napi::Value InitIndex(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t maxElements, m, efConstruction, seed;
    if (!Count(info[0], "maxElements", env, &maxElements) || !Count(info[1], "m", env, &m) ||
        !Count(info[2], "efConstruction", env, &efConstruction) || !Count(info[3], "randomSeed", env, &seed)) {
      return env.Undefined();
    }
    const bool replaceDeleted = info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value();
    if (!Free(env)) return env.Undefined();
    Guarded(env, [&] {
      index_.reset(new hnswlib::HierarchicalNSW<float>(space_.get(), maxElements, m, efConstruction, seed, replaceDeleted));
    });
    return env.Undefined();
  }

  Napi::Value ReadIndex(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) {
      Napi::TypeError::New(env, "readIndex(path, allowReplaceDeleted)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const bool replaceDeleted = info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
    if (!Free(env)) return env.Undefined();
    loading_ = true;
    auto* worker = new LoadWorker(env, this, space_.get(), info[0].As<Napi::String>().Utf8Value(), replaceDeleted, Value());
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }

  Napi::Value WriteIndex(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) {
      Napi::TypeError::New(env, "writeIndex(path)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!Ready(env)) return env.Undefined();
    saving_++;
    auto* worker = new SaveWorker(env, this, index_.get(), info[0].As<Napi::String>().Utf8Value(), Value());
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }

  Napi::Value ResizeIndex(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t n;
    if (!Mutable(env) || !Count(info[0], "maxElements", env, &n)) return env.Undefined();
    Guarded(env, [&] { index_->resizeIndex(n); });
    return env.Undefined();
  }

  Napi::Value AddPoint(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t label;
    if (!Mutable(env)) return env.Undefined();
    const float* data = VectorArg(info[0], env);
    if (data == nullptr || !Count(info[1], "label", env, &label)) return env.Undefined();
    const bool replaceDeleted = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    Guarded(env, [&] { index_->addPoint(data, static_cast<hnswlib::labeltype>(label), replaceDeleted); });
    return env.Undefined();
  }

  Napi::Value MarkDelete(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t label;
    if (!Mutable(env) || !Count(info[0], "label", env, &label)) return env.Undefined();
    Guarded(env, [&] { index_->markDelete(static_cast<hnswlib::labeltype>(label)); });
    return env.Undefined();
  }

  Napi::Value SetEf(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t ef;
    if (!Ready(env) || !Count(info[0], "ef", env, &ef)) return env.Undefined();
    index_->setEf(ef);
    return env.Undefined();
  }

  // search(query, k, labels: Uint32Array, distances: Float32Array, filter?) → count.
  // Results nearest first, as hnswlib-node's searchKnn orders them.
  Napi::Value Search(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t k;
    if (!Ready(env)) return env.Undefined();
    const float* query = VectorArg(info[0], env);
    if (query == nullptr || !Count(info[1], "k", env, &k)) return env.Undefined();
    if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
        !info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      Napi::TypeError::New(env, "search(query, k, labels: Uint32Array, distances: Float32Array, filter?)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint32Array labels = info[2].As<Napi::Uint32Array>();
    Napi::Float32Array distances = info[3].As<Napi::Float32Array>();
    if (labels.ElementLength() < k || distances.ElementLength() < k) {
      Napi::RangeError::New(env, "the result arrays are shorter than k").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::unique_ptr<JsFilter> filter;
    if (info.Length() > 4 && !info[4].IsUndefined()) {
      if (!info[4].IsFunction()) {
        Napi::TypeError::New(env, "the filter must be a function").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      filter.reset(new JsFilter(env, info[4].As<Napi::Function>()));
    }
    std::priority_queue<std::pair<float, hnswlib::labeltype>> knn;
    try {
      knn = index_->searchKnn(query, k, filter.get());
    } catch (const std::exception& e) {
      if (!env.IsExceptionPending()) Napi::Error::New(env, std::string("hnswlib: ") + e.what()).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (env.IsExceptionPending()) return env.Undefined();
    const size_t n = knn.size();
    uint32_t* outLabels = labels.Data();
    float* outDistances = distances.Data();
    for (size_t i = n; i-- > 0;) {
      outDistances[i] = knn.top().first;
      outLabels[i] = static_cast<uint32_t>(knn.top().second);
      knn.pop();
    }
    return Napi::Number::New(env, static_cast<double>(n));
  }

  Napi::Value GetCurrentCount(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Idle(env)) return env.Undefined();
    return Napi::Number::New(env, index_ ? static_cast<double>(index_->getCurrentElementCount()) : 0);
  }
  Napi::Value GetMaxElements(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Idle(env)) return env.Undefined();
    return Napi::Number::New(env, index_ ? static_cast<double>(index_->getMaxElements()) : 0);
  }
  Napi::Value GetNumDimensions(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(dim_));
  }
};

void SaveWorker::Done(bool) { target_->SaveDone(); }

void LoadWorker::Done(bool ok) { target_->Adopt(ok ? std::move(loaded_) : nullptr); }

Napi::Object Init(Napi::Env env, Napi::Object exports) { return Hnsw::Init(env, exports); }

}  // namespace

NODE_API_MODULE(allidb_hnsw, Init)
