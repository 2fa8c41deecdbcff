//! Facts about this machine and process.

use std::path::{Path, PathBuf};

/// This machine's host name (empty if the system will not say).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    }
}

/// Peak resident set size of this process so far, in MiB.
pub fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage only fills the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_maxrss as f64 / 1024.0
    }
}

/// Memory this process may still take, in bytes, and where the number comes
/// from: MemAvailable of /proc/meminfo (free memory plus what the kernel can
/// reclaim), or the limit of a memory cgroup the process is in (a
/// container's, a Slurm job's) where that is lower. None where
/// /proc/meminfo cannot be read (not Linux).
pub fn available_memory() -> Option<(u64, String)> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let mut best = (kib * 1024, "MemAvailable in /proc/meminfo".to_string());
    // A cgroup's usage counts page cache the kernel would reclaim, so only
    // its limit is compared: the check must never refuse what would fit.
    for (limit, file) in cgroup_memory_limits() {
        if limit < best.0 {
            best = (limit, format!("the limit in {}", file.display()));
        }
    }
    Some(best)
}

/// The memory limit of every cgroup level from this process's up to the
/// root, cgroup v1 (`memory.limit_in_bytes`) and v2 (`memory.max`), with the
/// file it was read from; "max" (v2's no limit) is left out.
fn cgroup_memory_limits() -> Vec<(u64, PathBuf)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else { return Vec::new() };
    let mut out = Vec::new();
    // "4:memory:/job_42" (v1) or "0::/user.slice/..." (v2).
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let (root, file) = if controllers.split(',').any(|c| c == "memory") {
            (Path::new("/sys/fs/cgroup/memory"), "memory.limit_in_bytes")
        } else if controllers.is_empty() {
            (Path::new("/sys/fs/cgroup"), "memory.max")
        } else {
            continue;
        };
        let mut dir = root.join(path.trim_start_matches('/'));
        loop {
            let limit = std::fs::read_to_string(dir.join(file)).ok().and_then(|s| s.trim().parse::<u64>().ok());
            if let Some(limit) = limit {
                out.push((limit, dir.join(file)));
            }
            if dir.as_path() == root || !dir.pop() || !dir.starts_with(root) {
                break;
            }
        }
    }
    out
}

/// Where gda keeps what it sets up or measures once (libtorch, corpora,
/// prepared data, the CPU peak of `device::peak`): `$GDA_CACHE`, else
/// `$XDG_CACHE_HOME/gda`, else `~/.cache/gda`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("GDA_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("gda");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("gda")
}

/// The CPU's model name (`model name` in /proc/cpuinfo; empty where the
/// system will not say).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
        })
        .unwrap_or_default()
}

/// "1.5 GiB": a byte count for a message.
pub fn fmt_bytes(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_memory_is_positive_and_at_most_the_machines() {
        let (bytes, source) = available_memory().expect("Linux has /proc/meminfo");
        let total: u64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        assert!(bytes > 0 && bytes <= total * 1024, "{bytes} from {source}");
    }

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(fmt_bytes(1536.0 * 1024.0 * 1024.0), "1.5 GiB");
        assert_eq!(fmt_bytes(100.0), "100 bytes");
        assert_eq!(fmt_bytes(2.0 * 1024f64.powi(7)), "2048.0 EiB");
    }
}
