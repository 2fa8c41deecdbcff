//! Statistics over seeds: mean and sample std, Student's t distribution
//! (CDF and quantile, from the regularized incomplete beta function) and the
//! paired t-test behind every comparison in a summary.

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; ~1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of I_x(a, b) (modified Lentz), valid for
/// x < (a + 1) / (a + b + 2).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function I_x(a, b).
pub fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    if t.is_infinite() {
        return if t > 0.0 { 1.0 } else { 0.0 };
    }
    let tail = 0.5 * inc_beta(df / 2.0, 0.5, df / (df + t * t));
    if t > 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The two-sided p-value P(|T| ≥ |t|), computed without cancellation.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_infinite() {
        return 0.0;
    }
    inc_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// The t with P(T ≤ t) = p (0 < p < 1), by bisection on the CDF.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0 && df > 0.0, "t_quantile({p}, {df})");
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0, 1.0);
    while t_cdf(hi, df) < p {
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-14 * hi.abs().max(1.0) {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// A paired comparison of two arms over the same seeds: d_i = a_i − b_i.
#[derive(Debug, Clone)]
pub struct Paired {
    pub diffs: Vec<f64>,
    pub mean: f64,
    /// Sample std of the differences (0 for n = 1).
    pub std: f64,
    /// The 95% confidence interval of the mean difference (Student t, n − 1
    /// degrees of freedom); None for n < 2.
    pub ci: Option<(f64, f64)>,
    /// The two-sided p-value of "mean difference = 0"; None for n < 2.
    pub p: Option<f64>,
}

impl Paired {
    pub fn new(diffs: Vec<f64>) -> Paired {
        let n = diffs.len();
        let (mean, std) = if n == 0 { (f64::NAN, f64::NAN) } else { mean_std(&diffs) };
        let (ci, p) = if n < 2 {
            (None, None)
        } else {
            let df = (n - 1) as f64;
            let se = std / (n as f64).sqrt();
            let half = t_quantile(0.975, df) * se;
            // Identical differences on every seed: no spread to scale by; the
            // difference is exact (p = 0) unless it is exactly zero.
            let p = if se == 0.0 {
                if mean == 0.0 {
                    1.0
                } else {
                    0.0
                }
            } else {
                t_two_sided_p(mean / se, df)
            };
            (Some((mean - half, mean + half)), Some(p))
        };
        Paired { diffs, mean, std, ci, p }
    }

    pub fn n(&self) -> usize {
        self.diffs.len()
    }

    /// Plain words for "a − b": which arm is lower and by how much, or that
    /// the seeds cannot tell them apart.
    pub fn verdict(&self, a: &str, b: &str, unit: &str) -> String {
        let n = self.n();
        match (self.ci, self.p) {
            _ if n == 0 => "no paired seeds finished".into(),
            (Some((lo, hi)), Some(p)) if lo <= 0.0 && hi >= 0.0 => {
                format!("no detectable difference at n = {n} (p = {})", fmt_p(p))
            }
            (Some(_), Some(p)) => {
                let lower = if self.mean < 0.0 { a } else { b };
                format!("{lower} lower by {:.4} {unit} (p = {})", self.mean.abs(), fmt_p(p))
            }
            _ => format!(
                "{} by {:.4} {unit} on one seed; no interval at n = 1",
                if self.mean < 0.0 { format!("{a} lower") } else { format!("{b} lower") },
                self.mean.abs()
            ),
        }
    }
}

/// A p-value with two significant digits, small ones in scientific notation.
pub fn fmt_p(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}
