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

/// FLOPs (or, with "/s" after it, a FLOP rate) with an SI prefix and three
/// significant digits: "283 kFLOP" per token, "60.1 GFLOP" per second.
pub fn si_flops(f: f64) -> String {
    for (unit, scale) in [("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)] {
        if f >= scale {
            let v = f / scale;
            let digits = if v >= 100.0 {
                0
            } else if v >= 10.0 {
                1
            } else {
                2
            };
            return format!("{v:.digits$} {unit}FLOP");
        }
    }
    format!("{f:.0} FLOP")
}

/// A duration: "42s", "3m05s", "2h07m".
pub fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_largest_units() {
        assert_eq!(fmt_duration(0.4), "0s");
        assert_eq!(fmt_duration(59.6), "1m00s");
        assert_eq!(fmt_duration(3599.0), "59m59s");
        assert_eq!(fmt_duration(7325.0), "2h02m");
    }

    #[test]
    fn si_flops_keep_three_significant_digits() {
        assert_eq!(si_flops(282_624.0), "283 kFLOP");
        assert_eq!(si_flops(60.09e9), "60.1 GFLOP");
        assert_eq!(si_flops(989e12), "989 TFLOP");
        assert_eq!(si_flops(2.5e6), "2.50 MFLOP");
        assert_eq!(si_flops(12.0), "12 FLOP");
    }
}
