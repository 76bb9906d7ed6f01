//! Summaries of latency samples: median, p90, min, mean, in microseconds.

use std::time::Duration;

use serde::Serialize;

/// A duration in microseconds, as the reports print it.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A summary of samples (microseconds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub samples: usize,
    /// The median.
    pub median_us: f64,
    /// The 90th percentile.
    pub p90_us: f64,
    /// The smallest sample.
    pub min_us: f64,
    /// The arithmetic mean.
    pub mean_us: f64,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none (or one is NaN).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|s| s.is_nan()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        Some(Summary {
            samples: sorted.len(),
            median_us: round(quantile(&sorted, 0.5)),
            p90_us: round(quantile(&sorted, 0.9)),
            min_us: round(sorted[0]),
            mean_us: round(mean),
        })
    }
}

/// The `q` quantile of sorted, non-empty data, interpolating linearly
/// between the two nearest ranks.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A ratio of two medians, rounded to two decimals; `None` when the base is
/// not positive.
pub fn ratio(x: f64, base: f64) -> Option<f64> {
    (base > 0.0).then(|| (x / base * 100.0).round() / 100.0)
}

/// Microseconds rounded to a tenth: finer digits are noise here.
fn round(us: f64) -> f64 {
    (us * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90_interpolate_between_ranks() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median_us, 2.5);
        assert_eq!(s.p90_us, 3.7);
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.mean_us, 2.5);
        assert_eq!(s.samples, 4);
        let ten: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(Summary::of(&ten).unwrap().p90_us, 10.0);
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn ratios_need_a_positive_base() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
