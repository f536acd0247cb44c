//! The workspace's one parallel map: items handed to a fixed number of worker threads, results
//! in input order, the first failure stopping the workers from taking more. Downloads, the
//! unpacking of packages and the initramfs compressed in parts all run through it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// `f(index, item)` for every item on `jobs` threads (at least one). Returns the results in the
/// order of `items`, or the error of the earliest item that failed (items not yet started when a
/// failure is seen are not run).
pub fn try_map<T, R, E, F>(items: &[T], jobs: usize, f: F) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
    F: Fn(usize, &T) -> Result<R, E> + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R, E>>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(items.len().max(1)) {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                let r = f(i, &items[i]);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    // After a failure some items never ran (None); collecting in order stops at the earliest
    // error, which precedes them all.
    results.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::try_map;

    #[test]
    fn keeps_the_order_and_runs_each_item_once() {
        let items: Vec<u64> = (0..100).collect();
        let out: Result<Vec<u64>, ()> = try_map(&items, 4, |i, v| {
            assert_eq!(i as u64, *v);
            Ok(v * 2)
        });
        assert_eq!(out.unwrap(), items.iter().map(|v| v * 2).collect::<Vec<_>>());
        let empty: Result<Vec<u8>, ()> = try_map(&[] as &[u8], 4, |_, v| Ok(*v));
        assert!(empty.unwrap().is_empty());
    }

    #[test]
    fn returns_the_earliest_failure_and_stops_taking_items() {
        let items: Vec<u32> = (0..1000).collect();
        let ran = std::sync::atomic::AtomicUsize::new(0);
        let out = try_map(&items, 2, |_, v| {
            ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if *v >= 10 {
                Err(format!("item {v}"))
            } else {
                Ok(*v)
            }
        });
        assert_eq!(out.unwrap_err(), "item 10");
        assert!(ran.load(std::sync::atomic::Ordering::Relaxed) < 1000, "workers went on after the failure");
    }
}
