//! Device choice and CPU thread control, device-to-host reads, and the
//! libtorch version gda was built against (`torch`).

use std::sync::atomic::{AtomicUsize, Ordering};

use tch::{Device, Kind, Tensor};

static HOST_READS: AtomicUsize = AtomicUsize::new(0);

/// The value of a one-element tensor on the host, counted: on CUDA every such
/// read waits for the device to finish its queue, so the training loop makes
/// them only where it logs, evaluates or checkpoints (`host_reads` lets a
/// caller check that).
pub fn host_f64(t: &Tensor) -> f64 {
    HOST_READS.fetch_add(1, Ordering::Relaxed);
    t.double_value(&[])
}

/// How many `host_f64` reads this process has made.
pub fn host_reads() -> usize {
    HOST_READS.load(Ordering::Relaxed)
}

/// The libtorch release gda is built against. Cargo allows one `tch` per
/// build (its torch-sys `links` libtorch), so scripts/build.sh picks the tch
/// release for the libtorch it finds and builds the same sources with it:
/// whatever differs between those releases' Rust APIs is bridged here, and
/// only here. Between tch 0.24 (libtorch 2.11) and 0.26 (2.13) nothing gda
/// calls changed; the generated bindings only gained and lost functions gda
/// does not use.
pub mod torch {
    /// The libtorch version found at build time (build.rs), e.g. "2.11.0".
    pub const LIBTORCH_VERSION: &str = match option_env!("GDA_LIBTORCH_VERSION") {
        Some(v) => v,
        None => "unknown",
    };
}

/// Parses a `train.device` value without touching the hardware.
pub fn parse_device(s: &str) -> Result<Option<Device>, String> {
    match s {
        "auto" => Ok(None),
        "cpu" => Ok(Some(Device::Cpu)),
        "cuda" => Ok(Some(Device::Cuda(0))),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(|n| Some(Device::Cuda(n)))
            .ok_or_else(|| format!("{s:?} is not a device; allowed: \"auto\", \"cpu\", \"cuda\", \"cuda:N\"")),
    }
}

/// Resolves `auto` to CUDA when libtorch sees a GPU and checks that a named
/// GPU exists.
pub fn select(spec_device: &str) -> Result<Device, String> {
    match parse_device(spec_device)? {
        None => Ok(if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }),
        Some(Device::Cuda(n)) => {
            let count = tch::Cuda::device_count() as usize;
            if n < count {
                Ok(Device::Cuda(n))
            } else {
                Err(format!("device {spec_device:?} is not available: libtorch sees {count} CUDA device(s); allowed: \"cpu\" or \"auto\""))
            }
        }
        Some(d) => Ok(d),
    }
}

/// Mixed precision where it pays: bf16 compute on CUDA (weights stay fp32),
/// fp32 on CPU.
pub fn compute_kind(device: Device) -> Kind {
    if device.is_cuda() {
        Kind::BFloat16
    } else {
        Kind::Float
    }
}

/// CPU cores this process may use (its affinity and cgroup CPU quota included).
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// More threads than this only thrash (and a hundred thousand overflow the
/// stack): four per core leaves room for deliberate oversubscription.
pub fn max_threads() -> usize {
    4 * cores()
}

/// Sets libtorch's intra-op threads; 0 keeps all cores. Returns the count in
/// use, or why `threads` is refused (more than [`max_threads`]).
pub fn set_threads(threads: usize) -> Result<usize, String> {
    check_threads(threads)?;
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
    Ok(tch::get_num_threads() as usize)
}

/// Refuses more threads than [`max_threads`], before any is started.
pub fn check_threads(threads: usize) -> Result<(), String> {
    let (cores, max) = (cores(), max_threads());
    if threads > max {
        return Err(format!(
            "{threads} threads are more than 4 × the {cores} cores this process may use; allowed: 0 (all cores) to {max}"
        ));
    }
    Ok(())
}

/// Checks that `bytes` fit in what `device` has free now; the error says
/// what is available, for a refusal message.
///
/// CPU: the memory this process may still take (`util::host::available_memory`).
/// CUDA: libtorch cannot say how much memory a GPU has, so one block of
/// `bytes` is allocated and freed at once. That is cheap (cudaMalloc
/// reserves the memory without touching it) and exact about what the device
/// can give; the caching allocator keeps the block for the run's tensors.
/// Other devices are not checked.
pub fn check_memory(device: Device, bytes: f64) -> Result<(), String> {
    use crate::util::host::fmt_bytes;
    match device {
        Device::Cpu => match crate::util::host::available_memory() {
            Some((available, source)) if bytes > available as f64 => {
                Err(format!("this machine has {} available ({source})", fmt_bytes(available as f64)))
            }
            _ => Ok(()),
        },
        Device::Cuda(_) => {
            if bytes >= i64::MAX as f64 {
                return Err(format!("no {} can hold that much", describe(device)));
            }
            match Tensor::f_empty([bytes as i64], (Kind::Uint8, device)) {
                Ok(_) => Ok(()),
                Err(e) => {
                    let why = e.to_string();
                    Err(format!("{} cannot allocate it: {}", describe(device), why.lines().next().unwrap_or("")))
                }
            }
        }
        _ => Ok(()),
    }
}

pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Measured dense matmul throughput (FLOP/s) of `device` in its compute
/// dtype (fp32 on CPU, bf16 on CUDA): the denominator of MFU. Square 512
/// matmuls after a warm-up; constant inputs, so no RNG is used.
pub fn matmul_peak_flops(device: Device) -> f64 {
    let n = if device.is_cuda() { 4096 } else { 512 };
    let a = Tensor::ones([n, n], (compute_kind(device), device));
    let reps = if device.is_cuda() { 20 } else { 8 };
    tch::no_grad(|| {
        let _ = a.matmul(&a).sum(Kind::Float).double_value(&[]);
        let start = std::time::Instant::now();
        let mut acc = Tensor::zeros([], (Kind::Float, device));
        for _ in 0..reps {
            acc += a.matmul(&a).narrow(0, 0, 1).sum(Kind::Float);
        }
        let _ = acc.double_value(&[]);
        2.0 * (n as f64).powi(3) * reps as f64 / start.elapsed().as_secs_f64()
    })
}
