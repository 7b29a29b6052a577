//! Password hashing of client secrets and user passwords (Argon2id, OWASP
//! parameters), run on a small pool of hashing threads so a slow hash never
//! stalls the async workers.
//!
//! Why a pool of its own rather than tokio's blocking threads: every hash
//! fills 19 MiB of Argon2 memory. Sixteen requests arriving together before
//! a client's secret was first verified held over 300 MiB at once (seen in
//! the poll benchmark with a heap profiler), and the allocator kept it:
//! each blocking thread frees into its own arena. With one thread per core
//! at most that many hashes are in memory, whatever the burst, and a flood
//! of wrong secrets queues instead of growing the heap.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

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

/// [`verify`] on a hashing thread; `phc = None` burns the same time and fails.
pub async fn verify_async(secret: String, phc: Option<String>) -> bool {
    verify_async_unless(secret, phc, || false).await
}

/// [`verify_async`], except that `already_verified` is asked first, on the
/// hashing thread when this job's turn comes: when a request with the same
/// secret was verified while this one queued, it answers `true` and the
/// hash is skipped, so a burst of one client's requests costs one hash.
pub async fn verify_async_unless(
    secret: String,
    phc: Option<String>,
    already_verified: impl FnOnce() -> bool + Send + 'static,
) -> bool {
    on_hashing_thread(move || {
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
    })
    .await
    .unwrap_or(false)
}

/// [`hash`] on a hashing thread.
pub async fn hash_async(secret: String) -> Result<String, String> {
    on_hashing_thread(move || hash(&secret))
        .await
        .ok_or_else(|| "password hashing failed".to_owned())?
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `f` on the hashing pool; `None` if it panicked.
async fn on_hashing_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    hashing_pool().lock().ok()?.send(job).ok()?;
    rx.await.ok()
}

/// The queue of the hashing threads, started on first use: one thread per
/// core, at most four (more would only add memory, not throughput).
fn hashing_pool() -> &'static Mutex<mpsc::Sender<Job>> {
    static POOL: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
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
        Mutex::new(tx)
    })
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
        let phc = hash_async("s3cret".into()).await.unwrap();
        assert!(verify_async("s3cret".into(), Some(phc.clone())).await);
        assert!(!verify_async("wrong".into(), Some(phc.clone())).await);
        assert!(!verify_async("s3cret".into(), None).await);
        // Already verified: true without hashing, even against no hash.
        assert!(verify_async_unless("anything".into(), None, || true).await);
    }

    #[tokio::test]
    async fn a_burst_queues_on_the_pool_and_every_answer_arrives() {
        let phc = hash_async("burst".into()).await.unwrap();
        let answers = futures_join_all((0..12).map(|i| {
            let secret = if i % 2 == 0 { "burst" } else { "nope" };
            verify_async(secret.into(), Some(phc.clone()))
        }))
        .await;
        let expected: Vec<bool> = (0..12).map(|i| i % 2 == 0).collect();
        assert_eq!(answers, expected);
    }

    async fn futures_join_all<F: std::future::Future<Output = bool> + Send + 'static>(
        futures: impl Iterator<Item = F>,
    ) -> Vec<bool> {
        let handles: Vec<_> = futures.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
