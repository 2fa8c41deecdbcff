//! The fused CPU kernels of `kernels.cpp`: RMSNorm with the residual add,
//! SwiGLU, RoPE of the stacked q/k heads and the differential combination,
//! each one pass forward and one backward (autograd functions in C++).
//! They replace chains of ATen ops on CPU tensors of f32/f64 when the spec
//! says `model.fused = true` (the default); CUDA and bf16 keep the ATen path.

use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn gda_fused_add_norm(
        x: *const C_tensor,
        a: *const C_tensor,
        w: *const C_tensor,
        eps: f64,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> i32;
    fn gda_fused_causal_attention(
        q: *const C_tensor,
        k: *const C_tensor,
        v: *const C_tensor,
        scale: f64,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> i32;
    fn gda_fused_swiglu(gu: *const C_tensor, out: *mut *mut C_tensor, err: *mut c_char, len: usize) -> i32;
    fn gda_fused_rope_heads(
        x: *const C_tensor,
        cos: *const C_tensor,
        sin: *const C_tensor,
        heads: i64,
        width: i64,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> i32;
    fn gda_fused_diff_combine(
        signal: *const C_tensor,
        noise: *const C_tensor,
        lambda: *const C_tensor,
        w: *const C_tensor,
        scale: f64,
        eps: f64,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> i32;
}

const ERR_LEN: usize = 1024;

/// Kernel calls so far (tests check that the fused path really ran).
static CALLS: AtomicUsize = AtomicUsize::new(0);

pub fn calls() -> usize {
    CALLS.load(Ordering::Relaxed)
}

/// Whether this CPU can run the kernels: on x86-64 they are compiled for
/// AVX2 + FMA (build.rs), so older CPUs keep the ATen path.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            true
        }
    })
}

/// Whether the fused kernels take a tensor like `x` when the spec asks for
/// them (`wanted`): CPU, f32 or f64.
pub fn applies(wanted: bool, x: &Tensor) -> bool {
    wanted && x.device() == Device::Cpu && matches!(x.kind(), Kind::Float | Kind::Double) && available()
}

/// Runs one kernel entry point that writes `N` new tensors. A failure is a
/// shape or dtype bug in gda, so it panics with libtorch's message, as tch
/// does for an ATen op. (The callers' `unsafe` blocks pass borrowed, live
/// at::Tensor handles, which the C++ side only reads.)
fn call<const N: usize>(what: &str, f: impl FnOnce(*mut *mut C_tensor, *mut c_char, usize) -> i32) -> [Tensor; N] {
    let mut out = [std::ptr::null_mut::<C_tensor>(); N];
    let mut err = [0u8; ERR_LEN];
    let rc = f(out.as_mut_ptr(), err.as_mut_ptr() as *mut c_char, ERR_LEN);
    if rc != 0 {
        let msg = CStr::from_bytes_until_nul(&err).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
        panic!("fused kernel {what}: {msg}");
    }
    CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: on success the entry point wrote N heap-allocated at::Tensor
    // handles, which the returned Tensors now own.
    out.map(|p| unsafe { Tensor::from_ptr(p) })
}

/// (x + a, RMSNorm(x + a)·w) over the last axis.
pub fn add_rms_norm(x: &Tensor, a: &Tensor, w: &Tensor, eps: f64) -> (Tensor, Tensor) {
    let [s, y] = call("add_rms_norm", |out, err, len| unsafe {
        gda_fused_add_norm(x.as_ptr(), a.as_ptr(), w.as_ptr(), eps, out, err, len)
    });
    (s, y)
}

/// RMSNorm(x)·w over the last axis.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
    let [y] = call("rms_norm", |out, err, len| unsafe {
        gda_fused_add_norm(x.as_ptr(), std::ptr::null(), w.as_ptr(), eps, out, err, len)
    });
    y
}

/// Causal softmax(q kᵀ·scale)·v for q (B, Hq, T, dk), k (B, Hk, T, dk) and
/// v (B, Hk, T, dv), q head h reading K/V head h / (Hq / Hk): (B, Hq, T, dv).
/// Widths may differ (no padding to V's).
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
    let [y] = call("causal_attention", |out, err, len| unsafe {
        gda_fused_causal_attention(q.as_ptr(), k.as_ptr(), v.as_ptr(), scale, out, err, len)
    });
    y
}

/// silu(g)·u for `gu` = [g | u] along the last axis.
pub fn swiglu(gu: &Tensor) -> Tensor {
    let [h] = call("swiglu", |out, err, len| unsafe { gda_fused_swiglu(gu.as_ptr(), out, err, len) });
    h
}

/// Rotate-half RoPE of the `heads` heads in `x` (B, T, heads·d), with
/// tables (T, d/2): (B, heads, T, width), zero-padded from d to `width`.
pub fn rope_heads(x: &Tensor, cos: &Tensor, sin: &Tensor, heads: i64, width: i64) -> Tensor {
    let [y] = call("rope_heads", |out, err, len| unsafe {
        gda_fused_rope_heads(x.as_ptr(), cos.as_ptr(), sin.as_ptr(), heads, width, out, err, len)
    });
    y
}

/// RMSNorm(signal − λ·noise)·w·scale as (B, T, H_s·W), for signal
/// (B, H_s, T, W) and noise (B, H_n, T, W): noise head h / G is subtracted
/// from signal head h.
pub fn diff_combine(signal: &Tensor, noise: &Tensor, lambda: &Tensor, w: &Tensor, scale: f64, eps: f64) -> Tensor {
    let [y] = call("diff_combine", |out, err, len| unsafe {
        gda_fused_diff_combine(signal.as_ptr(), noise.as_ptr(), lambda.as_ptr(), w.as_ptr(), scale, eps, out, err, len)
    });
    y
}
