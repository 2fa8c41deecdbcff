//! Numbers for people: counts, FLOPs and durations with units that keep
//! them short and comparable across runs.

/// A parameter count for people: 51.5K, 42.3M, 1.20B.
pub fn human_count(n: usize) -> String {
    let x = n as f64;
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}K", x / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", x / 1e6),
        _ => format!("{:.2}B", x / 1e9),
    }
}

/// Training FLOPs with a unit that keeps three significant digits.
pub fn human_flops(f: f64) -> String {
    for (unit, scale) in [("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)] {
        if f >= scale {
            return format!("{:.3} {unit}", f / scale);
        }
    }
    format!("{f:.3e} FLOP")
}

/// A duration: 45s, 12.5min, 3.2h.
pub fn fmt_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7200.0 {
        format!("{:.1}min", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}
