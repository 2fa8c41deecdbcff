// Fused CPU kernels for the model's elementwise chains (issue 29): each is
// one pass over memory forward and one backward, where the ATen path runs
// several full-size ops (and torch.compile wins by fusing them). Each is a
// torch::autograd::Function, so Rust composes them like any other op; the
// `model.fused` spec key chooses them (src/model/fused.rs). Rows are split
// over threads with at::parallel_for and each row is vectorised with
// at::vec; reductions over rows (weight gradients, dλ) go through one
// partial sum per thread, added in thread order.
//
// On x86-64 this file is compiled for AVX2 + FMA (build.rs); Rust calls it
// only on CPUs that have both (`fused::available`).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../ffi_guard.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/torch.h>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using at::Tensor;
template <typename T>
using Vec = at::vec::Vectorized<T>;

// Rows per task: about 16K elements, so tiny tensors stay on one thread.
int64_t grain(int64_t row) { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(row, 1)); }

template <typename T>
T hsum(Vec<T> v) {
  return at::vec::vec_reduce_all<T>([](Vec<T>& a, Vec<T>& b) { return a + b; }, v);
}

// Σ a·b over n elements; four accumulators, so consecutive FMAs do not wait
// on each other's latency.
template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  constexpr int64_t w = Vec<T>::size();
  Vec<T> acc[4] = {Vec<T>(T(0)), Vec<T>(T(0)), Vec<T>(T(0)), Vec<T>(T(0))};
  int64_t i = 0;
  for (; i + 4 * w <= n; i += 4 * w)
    for (int u = 0; u < 4; u++) acc[u] = at::vec::fmadd(Vec<T>::loadu(a + i + u * w), Vec<T>::loadu(b + i + u * w), acc[u]);
  for (; i + w <= n; i += w) acc[0] = at::vec::fmadd(Vec<T>::loadu(a + i), Vec<T>::loadu(b + i), acc[0]);
  T s = hsum((acc[0] + acc[1]) + (acc[2] + acc[3]));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

// One partial row of length n per thread, summed in thread order at the end.
template <typename T>
struct Partials {
  int64_t n;
  std::vector<T> buf;
  explicit Partials(int64_t n) : n(n), buf(static_cast<size_t>(n * at::get_num_threads()), T(0)) {}
  T* mine() { return buf.data() + at::get_thread_num() * n; }
  void sum_into(T* out) const {
    for (int64_t i = 0; i < n; i++) out[i] = T(0);
    for (size_t t = 0; t < buf.size() / std::max<int64_t>(n, 1); t++)
      for (int64_t i = 0; i < n; i++) out[i] += buf[t * n + i];
  }
};

// ---- RMSNorm with the residual add: s = x + a; y = s·rstd(s)·w ----------

template <typename T>
void add_norm_forward(const T* x, const T* a, const T* w, T* s, T* y, T* rstd, int64_t rows, int64_t c, double eps) {
  at::parallel_for(0, rows, grain(c), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) {
      const T* xr = x + r * c;
      T* sr = s + r * c;
      if (a != nullptr) {
        at::vec::map2<T>([](Vec<T> p, Vec<T> q) { return p + q; }, sr, xr, a + r * c, c);
      } else if (sr != xr) {
        std::memcpy(sr, xr, sizeof(T) * c);
      }
      T inv = T(1) / std::sqrt(dot(sr, sr, c) / T(c) + T(eps));
      rstd[r] = inv;
      at::vec::map2<T>([inv](Vec<T> p, Vec<T> q) { return p * Vec<T>(inv) * q; }, y + r * c, sr, w, c);
    }
  });
}

// Given dy (and ds, the gradient of s through the residual stream, or
// null): ds_total = ds + rstd·(g − ŝ·m) with g = dy·w, ŝ = s·rstd and
// m = mean(g·ŝ); dw = Σ_rows dy·ŝ.
template <typename T>
void add_norm_backward(const T* dy, const T* ds, const T* s, const T* w, const T* rstd, T* dsum, T* dw, int64_t rows,
                       int64_t c) {
  Partials<T> pw(c);
  at::parallel_for(0, rows, grain(c), [&](int64_t begin, int64_t end) {
    T* acc = pw.mine();
    std::vector<T> g(static_cast<size_t>(c));
    for (int64_t r = begin; r < end; r++) {
      const T* dyr = dy + r * c;
      const T* sr = s + r * c;
      T inv = rstd[r];
      at::vec::map2<T>([](Vec<T> p, Vec<T> q) { return p * q; }, g.data(), dyr, w, c);
      T m = dot(g.data(), sr, c) * inv / T(c);
      T* out = dsum + r * c;
      // out = inv·(g − s·inv·m) (+ ds)
      if (ds != nullptr) {
        at::vec::map3<T>([inv, m](Vec<T> gg, Vec<T> ss, Vec<T> d) { return Vec<T>(inv) * (gg - ss * Vec<T>(inv * m)) + d; },
                         out, g.data(), sr, ds + r * c, c);
      } else {
        at::vec::map2<T>([inv, m](Vec<T> gg, Vec<T> ss) { return Vec<T>(inv) * (gg - ss * Vec<T>(inv * m)); }, out, g.data(),
                         sr, c);
      }
      at::vec::map3<T>([inv](Vec<T> acc_, Vec<T> d, Vec<T> ss) { return at::vec::fmadd(d, ss * Vec<T>(inv), acc_); }, acc, acc,
                       dyr, sr, c);
    }
  });
  pw.sum_into(dw);
}

// Both return s and y; with a undefined, s is x itself (a plain RMSNorm).
std::pair<Tensor, Tensor> add_norm_run(AutogradContext* ctx, const Tensor& x, const Tensor& a, const Tensor& w, double eps) {
  auto xc = x.contiguous();
  auto ac = a.defined() ? a.contiguous() : a;
  auto wc = w.contiguous();
  int64_t c = x.size(-1), rows = x.numel() / c;
  auto s = a.defined() ? at::empty_like(xc) : xc;
  auto y = at::empty_like(xc);
  auto rstd = at::empty({rows}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gda_add_norm", [&] {
    add_norm_forward<scalar_t>(xc.data_ptr<scalar_t>(), ac.defined() ? ac.data_ptr<scalar_t>() : nullptr,
                               wc.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                               rstd.data_ptr<scalar_t>(), rows, c, eps);
  });
  ctx->save_for_backward({s, wc, rstd});
  return {s, y};
}

// {d(x + a), dw} from dy and ds (the gradient of s itself; may be undefined).
std::pair<Tensor, Tensor> add_norm_grads(AutogradContext* ctx, const Tensor& gy, const Tensor& gs) {
  auto saved = ctx->get_saved_variables();
  auto &s = saved[0], &w = saved[1], &rstd = saved[2];
  int64_t c = s.size(-1), rows = s.numel() / c;
  auto dy = gy.defined() ? gy.contiguous() : at::zeros_like(s);
  auto ds = gs.defined() ? gs.contiguous() : Tensor();
  auto dsum = at::empty_like(s);
  auto dw = at::empty_like(w);
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "gda_add_norm_backward", [&] {
    add_norm_backward<scalar_t>(dy.data_ptr<scalar_t>(), ds.defined() ? ds.data_ptr<scalar_t>() : nullptr,
                                s.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>(),
                                dsum.data_ptr<scalar_t>(), dw.data_ptr<scalar_t>(), rows, c);
  });
  return {dsum, dw};
}

struct AddNorm : public torch::autograd::Function<AddNorm> {
  static variable_list forward(AutogradContext* ctx, Tensor x, Tensor a, Tensor w, double eps) {
    auto [s, y] = add_norm_run(ctx, x, a, w, eps);
    return {s, y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto [dsum, dw] = add_norm_grads(ctx, grads[1], grads[0]);
    return {dsum, dsum, dw, Tensor()};
  }
};

struct Norm : public torch::autograd::Function<Norm> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor w, double eps) {
    return add_norm_run(ctx, x, Tensor(), w, eps).second;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto [dx, dw] = add_norm_grads(ctx, grads[0], Tensor());
    return {dx, dw, Tensor()};
  }
};

// ---- SwiGLU: h = silu(g)·u, g and u the two halves of the last axis -------

template <typename T>
void swiglu_forward(const T* gu, T* h, int64_t rows, int64_t f) {
  at::parallel_for(0, rows, grain(2 * f), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) {
      const T* g = gu + r * 2 * f;
      at::vec::map2<T>([](Vec<T> gg, Vec<T> uu) { return gg / (Vec<T>(T(1)) + gg.neg().exp()) * uu; }, h + r * f, g, g + f,
                       f);
    }
  });
}

template <typename T>
void swiglu_backward(const T* gu, const T* dh, T* dgu, int64_t rows, int64_t f) {
  at::parallel_for(0, rows, grain(2 * f), [&](int64_t begin, int64_t end) {
    using V = Vec<T>;
    for (int64_t r = begin; r < end; r++) {
      const T* g = gu + r * 2 * f;
      const T* u = g + f;
      const T* d = dh + r * f;
      T* dg = dgu + r * 2 * f;
      T* du = dg + f;
      int64_t i = 0;
      auto one = [&](V gg, V uu, V dd, V& outg, V& outu) {
        V sig = V(T(1)) / (V(T(1)) + gg.neg().exp());
        V silu = gg * sig;
        outu = dd * silu;
        // d silu/dg = σ·(1 + g·(1 − σ))
        outg = dd * uu * sig * (V(T(1)) + gg * (V(T(1)) - sig));
      };
      for (; i + V::size() <= f; i += V::size()) {
        V og, ou;
        one(V::loadu(g + i), V::loadu(u + i), V::loadu(d + i), og, ou);
        og.store(dg + i);
        ou.store(du + i);
      }
      if (i < f) {
        int64_t n = f - i;
        V og, ou;
        one(V::loadu(g + i, n), V::loadu(u + i, n), V::loadu(d + i, n), og, ou);
        og.store(dg + i, n);
        ou.store(du + i, n);
      }
    }
  });
}

struct SwiGlu : public torch::autograd::Function<SwiGlu> {
  static Tensor forward(AutogradContext* ctx, Tensor gu) {
    auto x = gu.contiguous();
    int64_t f = x.size(-1) / 2, rows = x.numel() / (2 * f);
    auto sizes = x.sizes().vec();
    sizes.back() = f;
    auto h = at::empty(sizes, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gda_swiglu",
                               [&] { swiglu_forward<scalar_t>(x.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), rows, f); });
    ctx->save_for_backward({x});
    return h;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto x = ctx->get_saved_variables()[0];
    auto dh = grads[0].contiguous();
    int64_t f = x.size(-1) / 2, rows = x.numel() / (2 * f);
    auto dgu = at::empty_like(x);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gda_swiglu_backward", [&] {
      swiglu_backward<scalar_t>(x.data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(), dgu.data_ptr<scalar_t>(), rows, f);
    });
    return {dgu};
  }
};

// ---- RoPE on the stacked q/k heads, out in (B, H, T, width) -------------
// The input is the projection's q/k columns, (B, T, H·d) with any row
// stride; the output is each head's rotate-half RoPE, laid out head-major
// and zero-padded from d to `width` (SDPA's equal Q/K/V widths), so the
// transpose, the cat of halves and the pad are the same single pass.

template <typename T>
void rope_forward(const T* x, int64_t row_stride, const float* cos, const float* sin, T* out, int64_t b, int64_t t,
                  int64_t h, int64_t d, int64_t width) {
  int64_t half = d / 2;
  at::parallel_for(0, b * h * t, grain(width), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      int64_t bi = i / (h * t), hi = (i / t) % h, ti = i % t;
      const T* xr = x + (bi * t + ti) * row_stride + hi * d;
      const float* c = cos + ti * half;
      const float* s = sin + ti * half;
      T* o = out + i * width;
      for (int64_t j = 0; j < half; j++) {
        T x1 = xr[j], x2 = xr[j + half];
        o[j] = x1 * T(c[j]) - x2 * T(s[j]);
        o[j + half] = x2 * T(c[j]) + x1 * T(s[j]);
      }
      for (int64_t j = d; j < width; j++) o[j] = T(0);
    }
  });
}

template <typename T>
void rope_backward(const T* dout, const float* cos, const float* sin, T* dx, int64_t b, int64_t t, int64_t h, int64_t d,
                   int64_t width) {
  int64_t half = d / 2;
  at::parallel_for(0, b * t, grain(h * d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) {
      int64_t bi = r / t, ti = r % t;
      const float* c = cos + ti * half;
      const float* s = sin + ti * half;
      for (int64_t hi = 0; hi < h; hi++) {
        const T* g = dout + ((bi * h + hi) * t + ti) * width;
        T* o = dx + r * h * d + hi * d;
        for (int64_t j = 0; j < half; j++) {
          T g1 = g[j], g2 = g[j + half];
          o[j] = g1 * T(c[j]) + g2 * T(s[j]);
          o[j + half] = g2 * T(c[j]) - g1 * T(s[j]);
        }
      }
    }
  });
}

struct RopeHeads : public torch::autograd::Function<RopeHeads> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor cos, Tensor sin, int64_t heads, int64_t width) {
    TORCH_CHECK(x.dim() == 3 && x.stride(2) == 1, "rope_heads: x must be (B, T, H*d) with unit last stride");
    int64_t b = x.size(0), t = x.size(1), d = x.size(2) / heads;
    TORCH_CHECK(d % 2 == 0 && width >= d, "rope_heads: head width must be even and at most the output width");
    // One (t, d/2) row of tables per position; the batch stride must be t rows.
    auto xs = x.stride(0) == t * x.stride(1) ? x : x.contiguous();
    auto c = cos.to(at::kFloat).contiguous(), s = sin.to(at::kFloat).contiguous();
    TORCH_CHECK(c.numel() == t * (d / 2), "rope_heads: tables must be (T, d/2)");
    auto out = at::empty({b, heads, t, width}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gda_rope_heads", [&] {
      rope_forward<scalar_t>(xs.data_ptr<scalar_t>(), xs.stride(1), c.data_ptr<float>(), s.data_ptr<float>(),
                             out.data_ptr<scalar_t>(), b, t, heads, d, width);
    });
    ctx->save_for_backward({c, s});
    ctx->saved_data["shape"] = x.sizes().vec();
    ctx->saved_data["heads"] = heads;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto shape = ctx->saved_data["shape"].toIntVector();
    int64_t heads = ctx->saved_data["heads"].toInt();
    auto g = grads[0].contiguous();
    int64_t b = shape[0], t = shape[1], d = shape[2] / heads, width = g.size(3);
    auto dx = at::empty(shape, g.options());
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "gda_rope_heads_backward", [&] {
      rope_backward<scalar_t>(g.data_ptr<scalar_t>(), saved[0].data_ptr<float>(), saved[1].data_ptr<float>(),
                              dx.data_ptr<scalar_t>(), b, t, heads, d, width);
    });
    return {dx, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// ---- The differential combination ----------------------------------------
// signal (B, Hs, T, W) and noise (B, Hn, T, W), Hs = G·Hn, each with any
// strides but a unit last one (SDPA's outputs are (B, T, H, W) in memory):
// o = signal − λ·noise (noise head h/G for signal head h), y = RMSNorm(o)·w·scale,
// written as (B, T, Hs·W), the o-projection's input.

struct Strided4 {
  int64_t s0, s1, s2;
  int64_t at(int64_t b, int64_t h, int64_t t) const { return b * s0 + h * s1 + t * s2; }
  static Strided4 of(const Tensor& x) { return {x.stride(0), x.stride(1), x.stride(2)}; }
};

template <typename T>
void diff_forward(const T* sig, Strided4 ss, const T* noi, Strided4 ns, T lam, const T* w, T scale, T* y, T* rstd,
                  int64_t b, int64_t hs, int64_t g, int64_t t, int64_t width, double eps) {
  at::parallel_for(0, b * t * hs, grain(width), [&](int64_t begin, int64_t end) {
    std::vector<T> o(static_cast<size_t>(width));
    for (int64_t i = begin; i < end; i++) {
      int64_t bi = i / (t * hs), ti = (i / hs) % t, hi = i % hs;
      at::vec::map2<T>([lam](Vec<T> p, Vec<T> q) { return p - Vec<T>(lam) * q; }, o.data(), sig + ss.at(bi, hi, ti),
                       noi + ns.at(bi, hi / g, ti), width);
      T inv = T(1) / std::sqrt(dot(o.data(), o.data(), width) / T(width) + T(eps));
      rstd[i] = inv;
      T k = inv * scale;
      at::vec::map2<T>([k](Vec<T> p, Vec<T> q) { return p * Vec<T>(k) * q; }, y + i * width, o.data(), w, width);
    }
  });
}

// dsig (written as (B, T, Hs, W)), dnoise (B, Hn, T, W) summed over each
// group's G signal heads, dλ and dw.
template <typename T>
void diff_backward(const T* dy, const T* sig, Strided4 ss, const T* noi, Strided4 ns, T lam, const T* w, T scale,
                   const T* rstd, T* dsig, T* dnoi, T* dlam, T* dw, int64_t b, int64_t hs, int64_t g, int64_t t,
                   int64_t width) {
  int64_t hn = hs / g;
  Partials<T> pw(width + 1);
  // One task per (b, t, noise head): its G signal heads write disjoint dsig
  // rows and one dnoise row, so no two threads write the same place.
  at::parallel_for(0, b * t * hn, grain(g * width), [&](int64_t begin, int64_t end) {
    T* acc = pw.mine();
    std::vector<T> o(static_cast<size_t>(width)), gw(static_cast<size_t>(width));
    for (int64_t i = begin; i < end; i++) {
      int64_t bi = i / (t * hn), ti = (i / hn) % t, ni = i % hn;
      const T* nr = noi + ns.at(bi, ni, ti);
      T* dn = dnoi + ((bi * hn + ni) * t + ti) * width;
      for (int64_t j = 0; j < width; j++) dn[j] = T(0);
      for (int64_t gi = 0; gi < g; gi++) {
        int64_t hi = ni * g + gi;
        int64_t row = (bi * t + ti) * hs + hi;
        const T* dyr = dy + row * width;
        at::vec::map2<T>([lam](Vec<T> p, Vec<T> q) { return p - Vec<T>(lam) * q; }, o.data(), sig + ss.at(bi, hi, ti), nr,
                         width);
        T inv = rstd[row];
        at::vec::map2<T>([scale](Vec<T> p, Vec<T> q) { return p * q * Vec<T>(scale); }, gw.data(), dyr, w, width);
        T m = dot(gw.data(), o.data(), width) * inv / T(width);
        T* ds = dsig + row * width;
        at::vec::map2<T>([inv, m](Vec<T> gg, Vec<T> oo) { return Vec<T>(inv) * (gg - oo * Vec<T>(inv * m)); }, ds, gw.data(),
                         o.data(), width);
        at::vec::map2<T>([lam](Vec<T> acc_, Vec<T> d) { return acc_ - Vec<T>(lam) * d; }, dn, dn, ds, width);
        acc[width] -= dot(ds, nr, width);
        T k = inv * scale;
        at::vec::map3<T>([k](Vec<T> a_, Vec<T> d, Vec<T> oo) { return at::vec::fmadd(d, oo * Vec<T>(k), a_); }, acc, acc, dyr,
                         o.data(), width);
      }
    }
  });
  std::vector<T> total(static_cast<size_t>(width + 1));
  pw.sum_into(total.data());
  std::memcpy(dw, total.data(), sizeof(T) * width);
  *dlam = total[width];
}

struct DiffCombine : public torch::autograd::Function<DiffCombine> {
  static Tensor forward(AutogradContext* ctx, Tensor signal, Tensor noise, Tensor lambda, Tensor w, double scale,
                        double eps) {
    TORCH_CHECK(signal.dim() == 4 && noise.dim() == 4 && signal.stride(3) == 1 && noise.stride(3) == 1,
                "diff_combine: signal and noise must be (B, H, T, W) with unit last stride");
    int64_t b = signal.size(0), hs = signal.size(1), t = signal.size(2), width = signal.size(3);
    int64_t g = hs / noise.size(1);
    auto wc = w.contiguous();
    auto y = at::empty({b, t, hs * width}, signal.options());
    auto rstd = at::empty({b * t * hs}, signal.options());
    double lam = lambda.item<double>();
    AT_DISPATCH_FLOATING_TYPES(signal.scalar_type(), "gda_diff_combine", [&] {
      diff_forward<scalar_t>(signal.data_ptr<scalar_t>(), Strided4::of(signal), noise.data_ptr<scalar_t>(),
                             Strided4::of(noise), scalar_t(lam), wc.data_ptr<scalar_t>(), scalar_t(scale),
                             y.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>(), b, hs, g, t, width, eps);
    });
    ctx->save_for_backward({signal, noise, wc, rstd, lambda});
    ctx->saved_data["scale"] = scale;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sv = ctx->get_saved_variables();
    auto &signal = sv[0], &noise = sv[1], &w = sv[2], &rstd = sv[3], &lambda = sv[4];
    double scale = ctx->saved_data["scale"].toDouble();
    int64_t b = signal.size(0), hs = signal.size(1), t = signal.size(2), width = signal.size(3);
    int64_t hn = noise.size(1), g = hs / hn;
    auto dy = grads[0].contiguous();
    // (B, T, Hs, W) in memory, handed back as (B, Hs, T, W): SDPA's own layout.
    auto dsig = at::empty({b, t, hs, width}, signal.options());
    auto dnoi = at::empty({b, hn, t, width}, noise.options());
    auto dw = at::empty_like(w);
    auto dlam = at::empty({}, signal.options());
    double lam = lambda.item<double>();
    AT_DISPATCH_FLOATING_TYPES(signal.scalar_type(), "gda_diff_combine_backward", [&] {
      diff_backward<scalar_t>(dy.data_ptr<scalar_t>(), signal.data_ptr<scalar_t>(), Strided4::of(signal),
                              noise.data_ptr<scalar_t>(), Strided4::of(noise), scalar_t(lam), w.data_ptr<scalar_t>(),
                              scalar_t(scale), rstd.data_ptr<scalar_t>(), dsig.data_ptr<scalar_t>(),
                              dnoi.data_ptr<scalar_t>(), dlam.data_ptr<scalar_t>(), dw.data_ptr<scalar_t>(), b, hs, g, t,
                              width);
    });
    return {dsig.transpose(1, 2), dnoi, dlam.to(lambda.scalar_type()), dw, Tensor(), Tensor()};
  }
};

// ---- Causal attention for small heads -----------------------------------
// softmax(q kᵀ·scale) v, causal, q (B, Hq, T, dk), k (B, Hk, T, dk), v
// (B, Hk, T, dv), q head h reading K/V head h / (Hq / Hk) (GQA, as SDPA's
// enable_gqa). Unlike ATen's CPU flash kernel this needs no equal widths
// (GDA's values are 2d wide: no zero-padding of q and k) and it has no
// per-block GEMM calls, which dominate at gda's head widths (8–64). One
// (b, head) pair per task; its T×T row of scores stays in cache. Out is
// (B, T, Hq, dv) in memory, like SDPA's, returned as (B, Hq, T, dv).

struct Strided {
  const void* p;
  int64_t s0, s1, s2;
  static Strided of(const Tensor& x) { return {x.data_ptr(), x.stride(0), x.stride(1), x.stride(2)}; }
  template <typename T>
  const T* row(int64_t b, int64_t h, int64_t t) const {
    return static_cast<const T*>(p) + b * s0 + h * s1 + t * s2;
  }
};

template <typename T>
T row_max(const T* x, int64_t n) {
  return at::vec::reduce_all<T>([](Vec<T>& a, Vec<T>& b) { return at::vec::maximum(a, b); }, x, n);
}

// Query rows are taken R at a time: every vector of kᵀ or vᵀ loaded feeds R
// independent FMA chains (one per row), instead of one load per FMA.
constexpr int64_t R = 4;

// out[r][j] = scale·(a_r · c_j) for rows r < rows and j < n, from cᵀ
// (w × ld): the scores of R query rows (or dO·v for R rows of dO).
template <typename T>
void block_scores(const T* const* a, int64_t rows, const T* ct, int64_t ld, int64_t w, int64_t n, T scale, T* out,
                  int64_t out_ld) {
  constexpr int64_t vw = Vec<T>::size();
  for (int64_t j = 0; j < n; j += vw) {
    int64_t m = std::min(vw, n - j);
    Vec<T> acc[R] = {Vec<T>(T(0)), Vec<T>(T(0)), Vec<T>(T(0)), Vec<T>(T(0))};
    for (int64_t e = 0; e < w; e++) {
      Vec<T> c = m == vw ? Vec<T>::loadu(ct + e * ld + j) : Vec<T>::loadu(ct + e * ld + j, m);
      for (int64_t r = 0; r < rows; r++) acc[r] = at::vec::fmadd(Vec<T>(a[r][e] * scale), c, acc[r]);
    }
    for (int64_t r = 0; r < rows; r++) {
      if (m == vw) {
        acc[r].store(out + r * out_ld + j);
      } else {
        acc[r].store(out + r * out_ld + j, m);
      }
    }
  }
}

// out_r[e] = Σ_{j<n} p[r][j]·ct[e][j]: R rows of P times (cᵀ)ᵀ.
template <typename T>
void block_apply(const T* p, int64_t p_ld, int64_t rows, const T* ct, int64_t ld, int64_t w, int64_t n, T* const* out) {
  constexpr int64_t vw = Vec<T>::size();
  for (int64_t e = 0; e < w; e++) {
    const T* c = ct + e * ld;
    Vec<T> acc[R] = {Vec<T>(T(0)), Vec<T>(T(0)), Vec<T>(T(0)), Vec<T>(T(0))};
    int64_t j = 0;
    for (; j + vw <= n; j += vw) {
      Vec<T> cv = Vec<T>::loadu(c + j);
      for (int64_t r = 0; r < rows; r++) acc[r] = at::vec::fmadd(Vec<T>::loadu(p + r * p_ld + j), cv, acc[r]);
    }
    for (int64_t r = 0; r < rows; r++) {
      T sum = hsum(acc[r]);
      for (int64_t jj = j; jj < n; jj++) sum += p[r * p_ld + jj] * c[jj];
      out[r][e] = sum;
    }
  }
}

// The causal softmax of R score rows in place: row r (query i0 + r) keeps
// keys j ≤ i0 + r and zeroes the rest of the n = i0 + rows; with `lse` null
// it is computed and returned in lse_out, else P = exp(s − lse).
template <typename T>
void block_softmax(T* s, int64_t ld, int64_t i0, int64_t rows, const T* lse, T* lse_out) {
  int64_t n = i0 + rows;
  for (int64_t r = 0; r < rows; r++) {
    T* sr = s + r * ld;
    int64_t nr = i0 + r + 1;
    T m = lse != nullptr ? lse[r] : row_max(sr, nr);
    at::vec::map<T>([m](Vec<T> x) { return (x - Vec<T>(m)).exp(); }, sr, sr, nr);
    for (int64_t j = nr; j < n; j++) sr[j] = T(0);
    if (lse == nullptr) {
      T l = at::vec::reduce_all<T>([](Vec<T>& a, Vec<T>& b) { return a + b; }, sr, nr);
      at::vec::map<T>([l](Vec<T> x) { return x / Vec<T>(l); }, sr, sr, nr);
      lse_out[r] = m + std::log(l);
    }
  }
}

// The (T × w) rows of a strided head, transposed into (w × T).
template <typename T>
void transpose_head(const Strided& x, int64_t b, int64_t h, int64_t t, int64_t w, T* out) {
  for (int64_t j = 0; j < t; j++) {
    const T* r = x.row<T>(b, h, j);
    for (int64_t e = 0; e < w; e++) out[e * t + j] = r[e];
  }
}

template <typename T>
void attn_forward(Strided q, Strided k, Strided v, T* out, T* lse, int64_t b, int64_t hq, int64_t hk, int64_t t,
                  int64_t dk, int64_t dv, T scale) {
  int64_t g = hq / hk;
  at::parallel_for(0, b * hq, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> kt(static_cast<size_t>(dk * t)), vt(static_cast<size_t>(dv * t)), s(static_cast<size_t>(R * t));
    int64_t last = -1;
    for (int64_t task = begin; task < end; task++) {
      int64_t bi = task / hq, hi = task % hq, ki = hi / g;
      if (bi * hk + ki != last) {
        transpose_head(k, bi, ki, t, dk, kt.data());
        transpose_head(v, bi, ki, t, dv, vt.data());
      }
      last = bi * hk + ki;
      for (int64_t i0 = 0; i0 < t; i0 += R) {
        int64_t rows = std::min(R, t - i0), n = i0 + rows;
        const T* qs[R];
        T* os[R];
        for (int64_t r = 0; r < rows; r++) {
          qs[r] = q.row<T>(bi, hi, i0 + r);
          os[r] = out + ((bi * t + i0 + r) * hq + hi) * dv;
        }
        block_scores(qs, rows, kt.data(), t, dk, n, scale, s.data(), t);
        block_softmax(s.data(), t, i0, rows, static_cast<const T*>(nullptr), lse + (bi * hq + hi) * t + i0);
        block_apply(s.data(), t, rows, vt.data(), t, dv, n, os);
      }
    }
  });
}

// One task per (b, K/V head): its G query heads add into the same dK and
// dV rows, so no two threads write one place. P is recomputed from lse.
template <typename T>
void attn_backward(Strided q, Strided k, Strided v, const T* out, const T* dout, const T* lse, T* dq, T* dk_, T* dv_,
                   int64_t b, int64_t hq, int64_t hk, int64_t t, int64_t dk, int64_t dv, T scale) {
  int64_t g = hq / hk;
  at::parallel_for(0, b * hk, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> kt(static_cast<size_t>(dk * t)), vt(static_cast<size_t>(dv * t)), p(static_cast<size_t>(R * t)),
        dp(static_cast<size_t>(R * t));
    for (int64_t task = begin; task < end; task++) {
      int64_t bi = task / hk, ki = task % hk;
      transpose_head(k, bi, ki, t, dk, kt.data());
      transpose_head(v, bi, ki, t, dv, vt.data());
      T* dkh = dk_ + (bi * hk + ki) * t * dk;
      T* dvh = dv_ + (bi * hk + ki) * t * dv;
      for (int64_t j = 0; j < t * dk; j++) dkh[j] = T(0);
      for (int64_t j = 0; j < t * dv; j++) dvh[j] = T(0);
      for (int64_t hi = ki * g; hi < (ki + 1) * g; hi++) {
        for (int64_t i0 = 0; i0 < t; i0 += R) {
          int64_t rows = std::min(R, t - i0), n = i0 + rows;
          const T *qs[R], *dos[R];
          T* dqs[R];
          T di[R];
          for (int64_t r = 0; r < rows; r++) {
            int64_t row = (bi * t + i0 + r) * hq + hi;
            qs[r] = q.row<T>(bi, hi, i0 + r);
            dos[r] = dout + row * dv;
            dqs[r] = dq + row * dk;
            di[r] = dot(dos[r], out + row * dv, dv);
          }
          block_scores(qs, rows, kt.data(), t, dk, n, scale, p.data(), t);
          block_softmax(p.data(), t, i0, rows, lse + (bi * hq + hi) * t + i0, static_cast<T*>(nullptr));
          // dp_rj = dO_r · v_j, then dS·scale (the gradient of the scaled scores).
          block_scores(dos, rows, vt.data(), t, dv, n, T(1), dp.data(), t);
          for (int64_t r = 0; r < rows; r++) {
            T d = di[r];
            at::vec::map2<T>([d, scale](Vec<T> pp, Vec<T> x) { return pp * (x - Vec<T>(d)) * Vec<T>(scale); },
                             dp.data() + r * t, p.data() + r * t, dp.data() + r * t, n);
          }
          block_apply(dp.data(), t, rows, kt.data(), t, dk, n, dqs);
          for (int64_t j = 0; j < n; j++) {
            T* dkj = dkh + j * dk;
            T* dvj = dvh + j * dv;
            for (int64_t r = 0; r < rows; r++) {
              T ds = dp[r * t + j], pj = p[r * t + j];
              for (int64_t e = 0; e < dk; e++) dkj[e] += ds * qs[r][e];
              for (int64_t e = 0; e < dv; e++) dvj[e] += pj * dos[r][e];
            }
          }
        }
      }
    }
  });
}

struct CausalAttention : public torch::autograd::Function<CausalAttention> {
  static Tensor forward(AutogradContext* ctx, Tensor q, Tensor k, Tensor v, double scale) {
    TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1, "causal_attention: unit last strides");
    int64_t b = q.size(0), hq = q.size(1), t = q.size(2), dk = q.size(3), hk = k.size(1), dv = v.size(3);
    TORCH_CHECK(hq % hk == 0 && k.size(2) == t && v.size(2) == t && v.size(1) == hk, "causal_attention: shapes");
    auto out = at::empty({b, t, hq, dv}, q.options());
    auto lse = at::empty({b, hq, t}, q.options());
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "gda_causal_attention", [&] {
      attn_forward<scalar_t>(Strided::of(q), Strided::of(k), Strided::of(v), out.data_ptr<scalar_t>(),
                             lse.data_ptr<scalar_t>(), b, hq, hk, t, dk, dv, scalar_t(scale));
    });
    ctx->save_for_backward({q, k, v, out, lse});
    ctx->saved_data["scale"] = scale;
    return out.transpose(1, 2);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sv = ctx->get_saved_variables();
    auto &q = sv[0], &k = sv[1], &v = sv[2], &out = sv[3], &lse = sv[4];
    double scale = ctx->saved_data["scale"].toDouble();
    int64_t b = q.size(0), hq = q.size(1), t = q.size(2), dk = q.size(3), hk = k.size(1), dv = v.size(3);
    // dO in out's (B, T, Hq, dv) layout.
    auto dout = grads[0].transpose(1, 2).contiguous();
    auto dq = at::empty({b, t, hq, dk}, q.options());
    auto dkt = at::empty({b, hk, t, dk}, k.options());
    auto dvt = at::empty({b, hk, t, dv}, v.options());
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "gda_causal_attention_backward", [&] {
      attn_backward<scalar_t>(Strided::of(q), Strided::of(k), Strided::of(v), out.data_ptr<scalar_t>(),
                              dout.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(), dq.data_ptr<scalar_t>(),
                              dkt.data_ptr<scalar_t>(), dvt.data_ptr<scalar_t>(), b, hq, hk, t, dk, dv,
                              scalar_t(scale));
    });
    return {dq.transpose(1, 2), dkt, dvt, Tensor()};
  }
};

// Runs body, which returns the new tensors; each is handed to Rust as a
// heap-allocated at::Tensor (what tch's C_tensor is).
template <typename F>
int guarded(Tensor** out, char* err, size_t len, F&& body) {
  return gda_ffi::guarded(err, len, [&] {
    variable_list r = body();
    for (size_t i = 0; i < r.size(); i++) out[i] = new Tensor(std::move(r[i]));
  });
}

}  // namespace

extern "C" {

// out = {x + a, RMSNorm(x + a)·w}; with a null, out = {RMSNorm(x)·w}.
int gda_fused_add_norm(const Tensor* x, const Tensor* a, const Tensor* w, double eps, Tensor** out, char* err,
                       size_t len) {
  return guarded(out, err, len, [&] {
    return a == nullptr ? variable_list{Norm::apply(*x, *w, eps)} : AddNorm::apply(*x, *a, *w, eps);
  });
}

int gda_fused_causal_attention(const Tensor* q, const Tensor* k, const Tensor* v, double scale, Tensor** out,
                               char* err, size_t len) {
  return guarded(out, err, len, [&] { return variable_list{CausalAttention::apply(*q, *k, *v, scale)}; });
}

int gda_fused_swiglu(const Tensor* gu, Tensor** out, char* err, size_t len) {
  return guarded(out, err, len, [&] { return variable_list{SwiGlu::apply(*gu)}; });
}

int gda_fused_rope_heads(const Tensor* x, const Tensor* cos, const Tensor* sin, int64_t heads, int64_t width,
                         Tensor** out, char* err, size_t len) {
  return guarded(out, err, len, [&] { return variable_list{RopeHeads::apply(*x, *cos, *sin, heads, width)}; });
}

int gda_fused_diff_combine(const Tensor* signal, const Tensor* noise, const Tensor* lambda, const Tensor* w,
                           double scale, double eps, Tensor** out, char* err, size_t len) {
  return guarded(out, err, len,
                 [&] { return variable_list{DiffCombine::apply(*signal, *noise, *lambda, *w, scale, eps)}; });
}

}  // extern "C"
