//! Student's t and the paired t-test against values computed independently
//! with scipy 1.17.1, by this script (each literal below is its output):
//!
//! ```python
//! from scipy import stats
//! import numpy as np
//! for p, df in [(0.975, 1), (0.975, 2), (0.975, 4), (0.975, 29), (0.9995, 3), (0.6, 10)]:
//!     print("ppf", p, df, repr(stats.t.ppf(p, df)))
//! for t, df in [(-2.5, 1), (0.3, 2), (1.7, 5), (-4.2, 12), (10.0, 3)]:
//!     print("cdf", t, df, repr(stats.t.cdf(t, df)))
//! for a, b in cases:  # the three pairs in paired_t_tests_match_scipy
//!     d = np.array(a) - np.array(b)
//!     r = stats.ttest_rel(a, b)
//!     ci = r.confidence_interval(0.95)
//!     print("paired", a, b, repr(d.mean()), repr(r.pvalue), repr(ci.low), repr(ci.high))
//! ```

use gda::report::stats::{t_cdf, t_quantile, Paired};

fn close(got: f64, want: f64, rel: f64) {
    assert!((got - want).abs() <= rel * want.abs().max(1e-300), "got {got}, want {want}");
}

#[test]
fn t_quantiles_match_scipy() {
    for (p, df, want) in [
        (0.975, 1.0, 12.706204736174694),
        (0.975, 2.0, 4.302652729749462),
        (0.975, 4.0, 2.7764451051977934),
        (0.975, 29.0, 2.045229642132703),
        (0.9995, 3.0, 12.923978636687961),
        (0.6, 10.0, 0.2601848294920803),
    ] {
        close(t_quantile(p, df), want, 1e-9);
        close(t_quantile(1.0 - p, df), -want, 1e-9);
    }
}

#[test]
fn t_cdf_matches_scipy() {
    for (t, df, want) in [
        (-2.5, 1.0, 0.12111894159084341),
        (0.3, 2.0, 0.6037571695799112),
        (1.7, 5.0, 0.925061606575838),
        (-4.2, 12.0, 0.0006159501135613732),
        (10.0, 3.0, 0.9989358004707929),
    ] {
        close(t_cdf(t, df), want, 1e-10);
    }
    assert_eq!(t_cdf(0.0, 7.0), 0.5);
}

#[test]
fn paired_t_tests_match_scipy() {
    // (a, b, mean of a − b, two-sided p, 95% CI) from scipy.stats.ttest_rel.
    type Case<'a> = (&'a [f64], &'a [f64], f64, f64, f64, f64);
    let cases: [Case; 3] = [
        (
            &[3.2141, 3.1987, 3.2250],
            &[3.2411, 3.2102, 3.2390],
            -0.017499999999999776,
            0.06779843191642372,
            -0.038172145675705496,
            0.0031721456757059403,
        ),
        (
            &[2.91, 2.95],
            &[2.93, 2.90],
            0.015000000000000124,
            0.7422378831816858,
            -0.42971716576611596,
            0.4597171657661162,
        ),
        (
            &[1.0, 1.1, 0.9, 1.05, 0.97],
            &[1.2, 1.25, 1.1, 1.3, 1.15],
            -0.19599999999999998,
            0.0002748552059233848,
            -0.24128244929659864,
            -0.15071755070340132,
        ),
    ];
    for (a, b, mean, p, lo, hi) in cases {
        let t = Paired::new(a.iter().zip(b).map(|(x, y)| x - y).collect());
        assert_eq!(t.n(), a.len());
        close(t.mean, mean, 1e-9);
        close(t.p.unwrap(), p, 1e-8);
        let (l, h) = t.ci.unwrap();
        close(l, lo, 1e-8);
        close(h, hi, 1e-8);
    }
}

#[test]
fn verdicts_say_what_the_interval_allows() {
    let noise = Paired::new(vec![0.02, -0.01]);
    assert!(noise.verdict("4:1", "1:1", "nats").starts_with("no detectable difference at n = 2 (p = "));
    let clear = Paired::new(vec![-0.2, -0.15, -0.2, -0.25, -0.18]);
    let v = clear.verdict("4:1", "1:1", "nats");
    assert!(v == "4:1 lower by 0.1960 nats (p = 2.7e-4)", "{v}");
    let worse = Paired::new(vec![0.2, 0.15, 0.2, 0.25, 0.18]);
    assert!(worse.verdict("4:1", "1:1", "nats").starts_with("1:1 lower by 0.1960 nats"));
    let one = Paired::new(vec![0.03]);
    assert!(one.ci.is_none() && one.p.is_none());
    assert!(one.verdict("a", "b", "nats").contains("no interval at n = 1"));
}

/// A single context or a flat series still spans a readable axis: the range
/// is wide enough that ten tick labels at three decimals are all different.
#[test]
fn degenerate_axes_are_widened() {
    use gda::report::plot::bounds;
    for vals in [vec![32.0], vec![3.5, 3.5, 3.5], vec![0.0], vec![1.0, 1.0 + 1e-9]] {
        let (lo, hi) = bounds(vals.iter().copied()).unwrap();
        let ticks: std::collections::BTreeSet<String> =
            (0..10).map(|i| format!("{:.3}", lo + (hi - lo) * i as f64 / 9.0)).collect();
        assert_eq!(ticks.len(), 10, "{vals:?}: {lo}..{hi}");
        assert!(lo < vals[0] && hi > vals[0]);
    }
    // A spread series keeps its 10% padding.
    let (lo, hi) = bounds([1.0, 3.0].into_iter()).unwrap();
    assert!((lo - 0.8).abs() < 1e-12 && (hi - 3.2).abs() < 1e-12, "{lo}..{hi}");
}
