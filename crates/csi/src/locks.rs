//! Per-volume lock table: at most one CSI operation per volume id at a time.
//!
//! A second call on a busy volume waits up to the table's patience and then gets ABORTED,
//! which the spec allows ("an operation is pending for the volume") and the CO retries with
//! backoff. A patience of zero answers ABORTED at once. Locks are released when the
//! [`VolumeGuard`] drops, including when the handler's future is cancelled.

use crate::errors::CsiError;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    held: Mutex<HashSet<String>>,
    released: Notify,
}

#[derive(Clone)]
pub struct VolumeLocks {
    inner: Arc<Inner>,
    patience: Duration,
}

/// Holds a volume's lock; dropping it releases the lock and wakes waiters.
#[must_use = "the lock is released when the guard drops"]
pub struct VolumeGuard {
    inner: Arc<Inner>,
    id: String,
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        self.inner
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        self.inner.released.notify_waiters();
    }
}

impl VolumeLocks {
    /// `patience`: how long a call waits for a busy volume before ABORTED.
    pub fn new(patience: Duration) -> Self {
        VolumeLocks {
            inner: Arc::default(),
            patience,
        }
    }

    fn try_take(&self, id: &str) -> Option<VolumeGuard> {
        let mut held = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(id.to_owned()).then(|| VolumeGuard {
            inner: self.inner.clone(),
            id: id.to_owned(),
        })
    }

    /// Take the lock of `id`, waiting up to the patience; ABORTED if still busy.
    pub async fn acquire(&self, id: &str) -> Result<VolumeGuard, CsiError> {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            // Register interest before checking, so a release in between is not missed.
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(g) = self.try_take(id) {
                return Ok(g);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(CsiError::Aborted(format!(
                    "another operation on volume {id} is in progress; retry later"
                )));
            }
        }
    }

    /// Whether `id` is locked right now (for tests and diagnostics).
    #[cfg(test)]
    pub fn is_locked(&self, id: &str) -> bool {
        self.inner
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn second_caller_is_aborted_without_patience() {
        let locks = VolumeLocks::new(Duration::ZERO);
        let g = locks.acquire("v1").await.unwrap();
        let e = locks.acquire("v1").await.err().unwrap();
        assert!(matches!(e, CsiError::Aborted(ref m) if m.contains("v1")));
        // Other volumes are independent.
        let _g2 = locks.acquire("v2").await.unwrap();
        drop(g);
        assert!(!locks.is_locked("v1"));
        let _g3 = locks.acquire("v1").await.unwrap();
    }

    #[tokio::test]
    async fn waiter_gets_the_lock_when_released_within_patience() {
        let locks = VolumeLocks::new(Duration::from_secs(5));
        let g = locks.acquire("v").await.unwrap();
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move { l2.acquire("v").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(g);
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn waiter_is_aborted_after_patience() {
        let locks = VolumeLocks::new(Duration::from_millis(50));
        let _g = locks.acquire("v").await.unwrap();
        let t = std::time::Instant::now();
        assert!(matches!(
            locks.acquire("v").await,
            Err(CsiError::Aborted(_))
        ));
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_calls_on_one_volume_never_overlap() {
        let locks = VolumeLocks::new(Duration::from_secs(10));
        let inside = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (locks, inside, max_seen) = (locks.clone(), inside.clone(), max_seen.clone());
            tasks.push(tokio::spawn(async move {
                let _g = locks.acquire("same").await.unwrap();
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max_seen.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max_seen.load(Ordering::SeqCst), 1);
        assert!(!locks.is_locked("same"));
    }

    #[tokio::test]
    async fn cancelled_holder_releases() {
        let locks = VolumeLocks::new(Duration::ZERO);
        let l2 = locks.clone();
        let t = tokio::spawn(async move {
            let _g = l2.acquire("v").await.unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(locks.is_locked("v"));
        t.abort();
        let _ = t.await;
        assert!(!locks.is_locked("v"));
    }
}
