//! Device choice and CPU thread control.

use tch::{Device, Kind};

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
    if device.is_cuda() { Kind::BFloat16 } else { Kind::Float }
}

/// Sets libtorch's intra-op threads; 0 keeps all cores. Returns the count in use.
pub fn set_threads(threads: usize) -> usize {
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
    tch::get_num_threads() as usize
}

pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
