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

/// The FLOP/s MFU divides by, and where that figure comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Peak {
    pub flops: f64,
    pub source: String,
}

/// Dense bf16 tensor-core peaks (FLOP/s, without structured sparsity) from
/// the vendors' datasheets; docs/run-directory.md ("FLOPs and MFU") cites
/// each. A row matches a GPU whose name holds its model as a whole word
/// ("NVIDIA A100-SXM4-80GB" is an A100, "NVIDIA A10G" is not an A10) and, if
/// it names one, its variant; the first matching row wins, so variants come
/// before their family's default (SXM) row.
pub const DATASHEET_BF16: [(&str, Option<&str>, f64); 14] = [
    ("B200", None, 2250e12),
    ("GH200", None, 989e12),
    ("H200", Some("NVL"), 835e12),
    ("H200", None, 989e12),
    ("H100", Some("PCIe"), 756e12),
    ("H100", Some("NVL"), 835e12),
    ("H100", None, 989e12),
    ("A100", None, 312e12),
    ("L40S", None, 362e12),
    ("L40", None, 181e12),
    ("L4", None, 121e12),
    ("A10", None, 125e12),
    ("4090", None, 165e12),
    ("3090", None, 71e12),
];

/// The datasheet peak of a GPU called `name` (as nvidia-smi prints it).
pub fn datasheet_peak(name: &str) -> Option<f64> {
    let words: Vec<String> =
        name.split(|c: char| c.is_whitespace() || c == '-').map(|w| w.to_ascii_lowercase()).collect();
    let has = |w: &str| words.iter().any(|x| *x == w.to_ascii_lowercase());
    DATASHEET_BF16.iter().find(|(model, variant, _)| has(model) && variant.is_none_or(has)).map(|r| r.2)
}

/// The name of CUDA device `index` as nvidia-smi reports it. libtorch
/// numbers the devices CUDA_VISIBLE_DEVICES lists, nvidia-smi all of them,
/// so the index goes through that list (whose entries nvidia-smi's `-i`
/// takes as they are: indices or UUIDs).
pub fn gpu_name(index: usize) -> Option<String> {
    let id = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) if !v.trim().is_empty() => v.split(',').nth(index)?.trim().to_string(),
        _ => index.to_string(),
    };
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", "-i", &id])
        .output()
        .ok()?;
    let name = String::from_utf8_lossy(&out.stdout).lines().next()?.trim().to_string();
    (out.status.success() && !name.is_empty()).then_some(name)
}

/// The peak MFU is reported against, the same for every run of a device
/// (so MFU compares across runs and sweeps, however busy the machine):
/// `GDA_PEAK_FLOPS` when set; on CUDA the datasheet bf16 peak of the GPU
/// ([`DATASHEET_BF16`]), measured only for a GPU not in the table; on the
/// CPU the fp32 matmul peak of this machine at `threads` threads, measured
/// once and cached ([`cpu_peak`]).
pub fn peak(device: Device, threads: usize) -> Peak {
    if let Some(flops) = std::env::var("GDA_PEAK_FLOPS").ok().and_then(|v| v.trim().parse::<f64>().ok()) {
        if flops.is_finite() && flops > 0.0 {
            return Peak { flops, source: "GDA_PEAK_FLOPS".into() };
        }
    }
    match device {
        Device::Cuda(n) => {
            let name = gpu_name(n);
            match name.as_deref().and_then(datasheet_peak) {
                Some(flops) => {
                    Peak { flops, source: format!("datasheet bf16 dense peak of {}", name.unwrap_or_default()) }
                }
                None => Peak {
                    flops: matmul_peak_flops(device),
                    source: format!(
                        "measured bf16 matmul peak of this run ({} is not in gda's datasheet table; set GDA_PEAK_FLOPS)",
                        name.unwrap_or_else(|| "a GPU nvidia-smi does not name".into())
                    ),
                },
            }
        }
        Device::Cpu => cpu_peak(threads),
        _ => Peak { flops: matmul_peak_flops(device), source: "measured matmul peak of this run".into() },
    }
}

/// The CPU's fp32 matmul peak at `threads` threads on this machine, from the
/// cache (`<cache>/peaks/`, one file per host, CPU model and thread count),
/// or measured now (the best of five measurements) and cached. A lock on
/// the file keeps two trainers starting at once from measuring twice: the
/// second waits and reads the first one's figure. Delete the file to
/// measure again (on an idle machine).
pub fn cpu_peak(threads: usize) -> Peak {
    use crate::util::host::{cache_dir, cpu_model, hostname};
    use sha2::{Digest, Sha256};
    let model = cpu_model();
    let host = hostname();
    let tag: String = Sha256::digest(model.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect();
    let safe: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let path = cache_dir().join("peaks").join(format!("cpu-{safe}-{tag}-{threads}t.json"));
    let read = || -> Option<f64> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        v["peak_flops"].as_f64().filter(|f| f.is_finite() && *f > 0.0)
    };
    let at = format!("{threads} thread{}", if threads == 1 { "" } else { "s" });
    let cached = |flops| Peak { flops, source: format!("cpu fp32 matmul peak at {at}, cached in {}", path.display()) };
    if let Some(flops) = read() {
        return cached(flops);
    }
    let measure = || (0..5).map(|_| matmul_peak_flops(Device::Cpu)).fold(0.0, f64::max);
    let written = (|| -> std::io::Result<f64> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(path.parent().expect("a file in a directory"))?;
        let lock =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path.with_extension("lock"))?;
        // SAFETY: flock on a descriptor this File owns; released when it closes.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        if let Some(flops) = read() {
            return Ok(flops);
        }
        let flops = measure();
        let record = serde_json::json!({
            "host": host,
            "cpu_model": model,
            "threads": threads,
            "dtype": "fp32",
            "peak_flops": flops,
            "measured_at_unix_s": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        });
        crate::util::fs::atomic_write(&path, &serde_json::to_vec_pretty(&record).expect("json serialises"))?;
        Ok(flops)
    })();
    match written {
        Ok(flops) => cached(flops),
        Err(e) => {
            crate::util::out::errln!(
                "warning: cannot cache the CPU peak in {} ({e}); MFU uses this run's measurement",
                path.display()
            );
            Peak { flops: measure(), source: format!("cpu fp32 matmul peak at {at}, measured by this run") }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasheet_peaks_match_whole_model_names_and_variants() {
        assert_eq!(datasheet_peak("NVIDIA H200"), Some(989e12));
        assert_eq!(datasheet_peak("NVIDIA H200 NVL"), Some(835e12));
        assert_eq!(datasheet_peak("NVIDIA H100 80GB HBM3"), Some(989e12));
        assert_eq!(datasheet_peak("NVIDIA H100 PCIe"), Some(756e12));
        assert_eq!(datasheet_peak("NVIDIA A100-SXM4-80GB"), Some(312e12));
        assert_eq!(datasheet_peak("NVIDIA L4"), Some(121e12));
        assert_eq!(datasheet_peak("NVIDIA L40S"), Some(362e12));
        assert_eq!(datasheet_peak("NVIDIA GeForce RTX 4090"), Some(165e12));
        assert_eq!(datasheet_peak("NVIDIA A10G"), None);
        assert_eq!(datasheet_peak("Tesla V100-SXM2-16GB"), None);
    }
}
