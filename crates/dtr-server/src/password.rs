//! Password hashing of client secrets and user passwords (Argon2id, OWASP
//! parameters), run on a small pool of hashing threads so a slow hash never
//! stalls the async workers.
//!
//! Why a pool of its own rather than tokio's blocking threads: every hash
//! fills 19 MiB of Argon2 memory. Sixteen requests arriving together before
//! a client's secret was first verified held over 300 MiB at once (seen in
//! the poll benchmark with a heap profiler), and the allocator kept it:
//! each blocking thread frees into its own arena. With one thread per core
//! at most that many hashes are in memory, whatever the burst.
//!
//! The queue in front of the threads is bounded (`[throttle]
//! hash_queue_per_thread`): when it is full a request needing a hash is
//! refused at once with [`Overloaded`] (503 `temporarily_unavailable`)
//! instead of waiting behind a flood of wrong secrets, so legitimate
//! requests see a short queue or a prompt retry hint, never a growing
//! wait. Failed authentication is throttled before it reaches the queue
//! (see `throttle`).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

/// Hashes a secret into a PHC string.
pub fn hash(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Verifies a secret against a PHC string (constant time inside argon2).
pub fn verify(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the client or user is unknown, so the
/// answer takes as long as for a known one.
fn dummy_phc() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("dummy-secret-for-timing").unwrap_or_default())
}

/// A request for a hash was refused because the hashing queue is full: the
/// server is overloaded, which says nothing about the secret. Callers answer
/// 503 `temporarily_unavailable` with `Retry-After`, never "wrong secret".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the password hashing queue is full")]
pub struct Overloaded;

/// Seconds a client is asked to wait when the hashing queue is full: a
/// queue of hashes drains in well under a second.
pub const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads and their bounded queue. Dropping the pool stops
/// its threads once the queued jobs are done.
pub struct HashPool {
    queue: SyncSender<Job>,
    threads: usize,
    capacity: usize,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashPool")
            .field("threads", &self.threads)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl HashPool {
    /// One thread per core, at most four (more would only add memory, not
    /// throughput), each with `queue_per_thread` jobs waiting at most.
    pub fn per_core(queue_per_thread: usize) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        Self::new(threads, threads.saturating_mul(queue_per_thread))
    }

    /// `threads` hashing threads and at most `capacity` jobs waiting for
    /// them (both at least 1).
    pub fn new(threads: usize, capacity: usize) -> Self {
        let threads = threads.max(1);
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("dtr-hash-{i}"))
                .spawn(move || loop {
                    // The lock is held only while taking a job, not while
                    // running it.
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    // A panicking job drops its answer channel (the caller
                    // sees `None`); the thread lives on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Self {
            queue: tx,
            threads,
            capacity,
        }
    }

    /// Hashing threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs that may wait for a thread.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues `f` now, or refuses at once when the queue is full: a flood of
    /// requests needing a hash must not wait without end behind each other
    /// (every waiting request holds a connection and, once running, 19 MiB).
    /// The answer is `None` if `f` panicked.
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<impl std::future::Future<Output = Option<T>>, Overloaded> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.queue.try_send(job) {
            Ok(()) => Ok(async move { rx.await.ok() }),
            Err(TrySendError::Full(_)) => Err(Overloaded),
            // No thread could be started: as unavailable as a full queue.
            Err(TrySendError::Disconnected(_)) => Err(Overloaded),
        }
    }

    /// [`verify`] on a hashing thread; `phc = None` burns the same time and
    /// fails.
    pub async fn verify(&self, secret: String, phc: Option<String>) -> Result<bool, Overloaded> {
        self.verify_unless(secret, phc, || false).await
    }

    /// [`HashPool::verify`], except that `already_verified` is asked first,
    /// on the hashing thread when this job's turn comes: when a request with
    /// the same secret was verified while this one queued, it answers `true`
    /// and the hash is skipped, so a burst of one client's requests costs
    /// one hash.
    pub async fn verify_unless(
        &self,
        secret: String,
        phc: Option<String>,
        already_verified: impl FnOnce() -> bool + Send + 'static,
    ) -> Result<bool, Overloaded> {
        let answer = self.submit(move || {
            if already_verified() {
                return true;
            }
            match phc {
                Some(p) => verify(&secret, &p),
                None => {
                    let _ = verify(&secret, dummy_phc());
                    false
                }
            }
        })?;
        Ok(answer.await.unwrap_or(false))
    }

    /// [`hash`] on a hashing thread.
    pub async fn hash(&self, secret: String) -> Result<String, String> {
        self.submit(move || hash(&secret))
            .map_err(|e| e.to_string())?
            .await
            .ok_or_else(|| "password hashing failed".to_owned())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_is_salted() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse", &a));
        assert!(!verify("wrong", &a));
        assert!(!verify("x", "not a phc string"));
    }

    #[tokio::test]
    async fn the_pool_verifies_and_skips_what_is_already_verified() {
        let pool = HashPool::new(2, 4);
        let phc = pool.hash("s3cret".into()).await.unwrap();
        assert_eq!(
            pool.verify("s3cret".into(), Some(phc.clone())).await,
            Ok(true)
        );
        assert_eq!(
            pool.verify("wrong".into(), Some(phc.clone())).await,
            Ok(false)
        );
        assert_eq!(pool.verify("s3cret".into(), None).await, Ok(false));
        // Already verified: true without hashing, even against no hash.
        assert_eq!(
            pool.verify_unless("anything".into(), None, || true).await,
            Ok(true)
        );
    }

    #[tokio::test]
    async fn a_burst_within_the_bound_queues_and_every_answer_arrives() {
        let pool = Arc::new(HashPool::new(2, 12));
        let phc = pool.hash("burst".into()).await.unwrap();
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let secret = if i % 2 == 0 { "burst" } else { "nope" };
                let (pool, phc) = (pool.clone(), phc.clone());
                tokio::spawn(async move { pool.verify(secret.into(), Some(phc)).await })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.unwrap(), Ok(i % 2 == 0));
        }
    }

    #[tokio::test]
    async fn a_full_queue_sheds_at_once_and_recovers() {
        let pool = HashPool::new(1, 2);
        // Hold the only thread until released (waiting until it has taken
        // its job), then fill the queue.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = Arc::new(Mutex::new(held));
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let hold = || {
            let (held, started_tx) = (held.clone(), started_tx.clone());
            move || {
                let _ = started_tx.send(());
                let _ = held.lock().map(|r| r.recv());
            }
        };
        let mut waiting = vec![pool.submit(hold()).unwrap()];
        started.recv().unwrap();
        let refused = loop {
            match pool.submit(hold()) {
                Ok(f) => waiting.push(f),
                Err(e) => break e,
            }
            assert!(waiting.len() <= 3, "the queue is not bounded");
        };
        assert_eq!(waiting.len(), 3);
        assert_eq!(refused, Overloaded);
        // A verification now is refused without hashing, distinctly from a
        // wrong secret.
        assert_eq!(pool.verify("s".into(), None).await, Err(Overloaded));
        assert!(pool.hash("s".into()).await.is_err());
        drop(release);
        for f in waiting {
            assert_eq!(f.await, Some(()));
        }
        assert_eq!(pool.verify("s".into(), None).await, Ok(false));
    }
}
