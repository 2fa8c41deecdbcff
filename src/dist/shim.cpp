// The C++ of distributed training (src/model/kernels.cpp holds the fused
// CPU kernels): a thin extern "C" layer over c10d, the engine under
// torch.distributed that libtorch already contains (Gloo on CPU, NCCL on
// CUDA builds). Every entry point catches what c10d throws and hands the
// text back in `err`: no C++ exception crosses into Rust. Built by build.rs.
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../ffi_guard.h"

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

using gda_ffi::guarded;

// A group holding only a store: a FileStore at `file` (for `file_workers`)
// when it is non-empty, else a TCPStore at host:port, served when `serve`.
Group* store_group(const char* file, int file_workers, const char* host, int port, bool serve,
                   std::optional<int> tcp_workers, int64_t timeout_ms) {
  auto timeout = std::chrono::milliseconds(timeout_ms);
  c10::intrusive_ptr<c10d::Store> store;
  if (file != nullptr && file[0] != '\0') {
    store = c10::make_intrusive<c10d::FileStore>(std::string(file), file_workers);
  } else {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = serve;
    if (tcp_workers) {
      opts.numWorkers = *tcp_workers;
    }
    opts.waitWorkers = false;
    opts.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
  }
  store->setTimeout(timeout);
  return new Group{store, {}, timeout};
}


// Gradient averaging overlapped with backward (as DDP's reducer): a hook
// after each parameter's gradient accumulator counts it ready; a bucket whose
// parameters are all ready is copied into its flat buffer and its all-reduce
// started at once. Buckets start strictly in index order, so every rank
// issues the same collectives in the same order whatever order its hooks
// fire in. Hooks fire only while armed (the last micro-batch's backward),
// so accumulated micro-batches are reduced once, whole.
struct Reducer {
  Group* group;
  std::vector<at::Tensor> params;  // in bucket order
  std::vector<size_t> bucket_of;   // bucket index of each parameter
  std::vector<size_t> first;       // first parameter of each bucket, plus the end
  std::vector<at::Tensor> flat;    // one buffer per bucket, kept across steps
  std::vector<size_t> missing;     // parameters not yet ready, per bucket
  std::vector<bool> ready;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  size_t launched = 0;
  size_t in_backward = 0;  // buckets started by hooks in this round
  bool armed = false;
  std::string error;  // what a hook hit: reported by the wait, not thrown into backward
  // The accumulator handle's type is whatever grad_accumulator returns:
  // intrusive_ptr<Node> in torch 2.13, shared_ptr<Node> in 2.11.
  using Accumulator = decltype(torch::autograd::impl::grad_accumulator(std::declval<const at::Tensor&>()));
  std::vector<std::pair<Accumulator, uintptr_t>> hooks;

  void reset() {
    works.clear();
    launched = 0;
    in_backward = 0;
    for (size_t b = 0; b + 1 < first.size(); b++) missing[b] = first[b + 1] - first[b];
    std::fill(ready.begin(), ready.end(), false);
  }

  // Copies bucket `b`'s gradients into its buffer (zeros where a parameter
  // got none, so the shapes match on every rank) and starts its all-reduce.
  void launch(size_t b) {
    at::NoGradGuard no_grad;
    int64_t offset = 0;
    for (size_t i = first[b]; i < first[b + 1]; i++) {
      auto n = params[i].numel();
      auto slot = flat[b].narrow(0, offset, n);
      const auto& grad = params[i].grad();
      if (grad.defined()) {
        slot.copy_(grad.reshape({-1}));
      } else {
        slot.zero_();
      }
      offset += n;
    }
    std::vector<at::Tensor> one{flat[b]};
    works.push_back(group->backend->allreduce(one, c10d::AllreduceOptions{}));
    launched++;
  }

  void on_ready(size_t i) {
    if (!armed || ready[i]) return;
    ready[i] = true;
    missing[bucket_of[i]]--;
    try {
      while (launched + 1 < first.size() && missing[launched] == 0) {
        launch(launched);
        in_backward++;
      }
    } catch (const std::exception& e) {
      // Stop launching: the wait reports it, and the run ends.
      error = e.what();
      armed = false;
    }
  }
};

struct ReadyHook : torch::autograd::FunctionPostHook {
  Reducer* reducer;
  size_t index;
  ReadyHook(Reducer* r, size_t i) : reducer(r), index(i) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    reducer->on_ready(index);
    return outputs;
  }
};

}  // namespace

extern "C" {

// A store for `world` ranks: a FileStore at `file` when it is non-empty
// (ranks on one machine), else a TCPStore at host:port served by rank 0.
void* gda_store_new(const char* file, const char* host, int port, int rank, int world, int64_t timeout_ms,
                    char* err, size_t err_len) {
  Group* g = nullptr;
  guarded(err, err_len, [&] { g = store_group(file, world, host, port, rank == 0, world, timeout_ms); });
  return g;
}

// A second connection to the store of a group, for the heartbeat thread: its
// own socket, so a beat never waits behind the main thread's store calls,
// and its own short timeout. It never serves (rank 0's group does) and never
// cleans up a FileStore (numWorkers -1: the launcher removes the file).
void* gda_store_client(const char* file, const char* host, int port, int64_t timeout_ms, char* err,
                       size_t err_len) {
  Group* g = nullptr;
  guarded(err, err_len, [&] { g = store_group(file, -1, host, port, false, std::nullopt, timeout_ms); });
  return g;
}

// Adds `delta` to the counter `key` (created at 0) and returns the new value:
// one atomic call that never waits for a key, unlike get.
int gda_store_add(void* group, const char* key, int64_t delta, int64_t* out, char* err, size_t err_len) {
  auto* g = static_cast<Group*>(group);
  return guarded(err, err_len, [&] { *out = g->store->add(std::string(key), delta); });
}

int gda_store_set(void* group, const char* key, const uint8_t* value, size_t len, char* err, size_t err_len) {
  auto* g = static_cast<Group*>(group);
  return guarded(err, err_len, [&] { g->store->set(std::string(key), std::vector<uint8_t>(value, value + len)); });
}

// Waits (up to the timeout) for `key`, then copies at most `cap` bytes of it
// to `out`; `*len` is the value's full length.
int gda_store_get(void* group, const char* key, uint8_t* out, size_t cap, size_t* len, char* err, size_t err_len) {
  auto* g = static_cast<Group*>(group);
  return guarded(err, err_len, [&] {
    auto value = g->store->get(std::string(key));
    *len = value.size();
    std::memcpy(out, value.data(), std::min(cap, value.size()));
  });
}

// Joins the process group over the store: Gloo on 127.0.0.1 or `host`, or
// NCCL (nccl != 0, CUDA builds only).
int gda_group_join(void* group, const char* host, int rank, int world, int nccl, char* err, size_t err_len) {
  auto* g = static_cast<Group*>(group);
  return guarded(err, err_len, [&] {
    if (nccl != 0) {
#ifdef USE_C10D_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = g->timeout;
      g->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store, rank, world, opts);
#else
      throw std::runtime_error("this gda was built without NCCL (a CPU build); use a CPU device or scripts/gpu/build.sh");
#endif
    } else {
      auto opts = c10d::ProcessGroupGloo::Options::create(g->timeout);
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(std::string(host)));
      g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, world, opts);
    }
  });
}

// Sums each of the `n` tensors over the ranks, in place: every all-reduce is
// issued first, then all are waited for, so they overlap.
int gda_all_reduce_sum(void* group, void** tensors, size_t n, char* err, size_t err_len) {
  auto* g = static_cast<Group*>(group);
  return guarded(err, err_len, [&] {
    if (!g->backend) throw std::runtime_error("the process group was not joined");
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(n);
    for (size_t i = 0; i < n; i++) {
      std::vector<at::Tensor> one{*static_cast<at::Tensor*>(tensors[i])};
      works.push_back(g->backend->allreduce(one, c10d::AllreduceOptions{}));
    }
    for (auto& w : works) w->wait(g->timeout);
  });
}

// A reducer over the `n` parameters `tensors` (leaf tensors that require
// grad), cut into `nb` buckets: bucket b holds parameters
// first[b] .. first[b+1] (`first` has nb + 1 entries), all of one dtype.
// It keeps each parameter's gradient accumulator alive: the hooks stay on the
// accumulator every later forward pass reuses.
void* gda_reducer_new(void* group, void** tensors, size_t n, const size_t* first, size_t nb, char* err,
                      size_t err_len) {
  auto* g = static_cast<Group*>(group);
  Reducer* r = nullptr;
  guarded(err, err_len, [&] {
    if (!g->backend) throw std::runtime_error("the process group was not joined");
    auto red = std::make_unique<Reducer>();
    red->group = g;
    red->first.assign(first, first + nb + 1);
    if (red->first.back() != n) throw std::runtime_error("the buckets do not cover the parameters");
    for (size_t i = 0; i < n; i++) red->params.push_back(*static_cast<at::Tensor*>(tensors[i]));
    red->bucket_of.resize(n);
    for (size_t b = 0; b < nb; b++) {
      int64_t numel = 0;
      for (size_t i = red->first[b]; i < red->first[b + 1]; i++) {
        red->bucket_of[i] = b;
        numel += red->params[i].numel();
      }
      red->flat.push_back(at::empty({numel}, red->params[red->first[b]].options().requires_grad(false)));
    }
    red->missing.resize(nb);
    red->ready.resize(n);
    red->reset();
    for (size_t i = 0; i < n; i++) {
      auto acc = torch::autograd::impl::grad_accumulator(red->params[i]);
      if (!acc) throw std::runtime_error("a parameter has no gradient accumulator (it does not require grad)");
      auto key = acc->add_post_hook(std::make_unique<ReadyHook>(red.get(), i));
      red->hooks.emplace_back(acc, key);
    }
    r = red.release();
  });
  return r;
}

// Arms the hooks for the next backward pass: its gradients are the ones
// reduced.
void gda_reducer_arm(void* reducer) {
  auto* r = static_cast<Reducer*>(reducer);
  r->reset();
  r->error.clear();
  r->armed = true;
}

// Starts the buckets no hook started (all of them when the hooks were not
// armed; those with a parameter that got no gradient), in order, then the
// all-reduce of `extra`, waits for all, and replaces each gradient by the sum
// times `scale`. `*in_backward`: how many buckets the hooks had started.
int gda_reducer_wait(void* reducer, void* extra, double scale, size_t* in_backward, char* err, size_t err_len) {
  auto* r = static_cast<Reducer*>(reducer);
  return guarded(err, err_len, [&] {
    r->armed = false;
    if (!r->error.empty()) throw std::runtime_error(r->error);
    *in_backward = r->in_backward;
    while (r->launched + 1 < r->first.size()) r->launch(r->launched);
    std::vector<at::Tensor> one{*static_cast<at::Tensor*>(extra)};
    r->works.push_back(r->group->backend->allreduce(one, c10d::AllreduceOptions{}));
    for (auto& w : r->works) w->wait(r->group->timeout);
    at::NoGradGuard no_grad;
    for (size_t b = 0; b + 1 < r->first.size(); b++) {
      r->flat[b].mul_(scale);
      int64_t offset = 0;
      for (size_t i = r->first[b]; i < r->first[b + 1]; i++) {
        auto n = r->params[i].numel();
        auto grad = r->params[i].mutable_grad();
        if (grad.defined()) grad.copy_(r->flat[b].narrow(0, offset, n).view_as(grad));
        offset += n;
      }
    }
    r->reset();
  });
}

// Takes the hooks off the accumulators (they point at the reducer), then
// frees it.
void gda_reducer_free(void* reducer) {
  auto* r = static_cast<Reducer*>(reducer);
  try {
    for (auto& [acc, key] : r->hooks) acc->del_post_hook(key);
    delete r;
  } catch (...) {
  }
}

// Frees a healthy group. One whose peer died is never freed: its Gloo
// threads may be blocked on the dead peer, and the process is ending anyway.
void gda_group_free(void* group) {
  auto* g = static_cast<Group*>(group);
  try {
    delete g;
  } catch (...) {
  }
}

}  // extern "C"
