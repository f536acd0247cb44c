//! The median, the one summary every benchmark of this workspace prints (xtask's benches and
//! the minikube race alike).

use std::time::Duration;

/// A value with a midpoint between two of them (for the median of an even count).
pub trait Midpoint: Copy + PartialOrd + Default {
    fn midpoint(self, other: Self) -> Self;
}

impl Midpoint for f64 {
    fn midpoint(self, other: f64) -> f64 {
        (self + other) / 2.0
    }
}

impl Midpoint for Duration {
    fn midpoint(self, other: Duration) -> Duration {
        (self + other) / 2
    }
}

/// The median of `v`: the middle value, the midpoint of the two middle ones for an even count,
/// zero (the default) for none.
pub fn median<T: Midpoint>(mut v: Vec<T>) -> T {
    if v.is_empty() {
        return T::default();
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        v[n / 2 - 1].midpoint(v[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_even_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::<f64>::new()), 0.0);
        assert_eq!(median(vec![Duration::from_millis(30), Duration::from_millis(10)]), Duration::from_millis(20));
    }
}
