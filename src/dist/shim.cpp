// The only C++ in gda: a thin extern "C" layer over c10d, the engine under
// torch.distributed that libtorch already contains (Gloo on CPU, NCCL on
// CUDA builds). Every entry point catches what c10d throws and hands the
// text back in `err`: no C++ exception crosses into Rust. Built by build.rs.
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

// c10's messages end in a C++ backtrace ("Exception raised from ..."): only
// the sentence before it means anything to a user.
void fail(char* err, size_t len, const char* what) {
  if (err == nullptr || len == 0) return;
  std::string text(what);
  auto cut = text.find("\nException raised from");
  if (cut != std::string::npos) text.resize(cut);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  std::strncpy(err, text.c_str(), len - 1);
  err[len - 1] = '\0';
}

template <typename F>
int guarded(char* err, size_t len, F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    fail(err, len, e.what());
  } catch (...) {
    fail(err, len, "unknown C++ exception");
  }
  return -1;
}

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
