//! PostgreSQL for tests: a fresh database per test, created on the server
//! named by `DTR_TEST_POSTGRES_URL` and dropped afterwards, so tests run in
//! parallel and leave nothing behind. Without the variable the PostgreSQL
//! tests are compiled as ignored on a developer's machine (the build
//! scripts set `dtr_no_postgres`; every such test carries
//! `#[cfg_attr(dtr_no_postgres, ignore = ...)]`), so the summary counts
//! them as not run, and they fail in CI (`CI=true`), where `.ci/run` starts
//! PostgreSQL and sets it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand::RngCore;
use std::io::Write;

/// The variable holding the server's URL (a role allowed to create databases).
pub const URL_ENV: &str = "DTR_TEST_POSTGRES_URL";

/// The base URL; `None` (after printing a notice) when unset outside CI.
pub fn base_url(test: &str) -> Option<String> {
    match std::env::var(URL_ENV) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            if ci {
                panic!(
                    "{URL_ENV} is not set but CI=true: the PostgreSQL tests must run in CI \
                     (.ci/run starts PostgreSQL and exports it)"
                );
            }
            // Written to stderr directly: the test harness captures
            // `eprintln!` of passing tests, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set {URL_ENV}=postgres://USER:PASSWORD@127.0.0.1/DB to run it"
            );
            None
        }
    }
}

/// A database of its own for one test; dropped (with its connections) on drop.
pub struct TestDb {
    /// URL of the fresh database.
    pub url: String,
    base: String,
    name: String,
}

async fn admin_connection(base: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {URL_ENV}: {e}"));
    tokio::spawn(conn);
    client
}

impl TestDb {
    /// Creates the database; `None` when PostgreSQL tests are skipped.
    pub async fn create(test: &str) -> Option<TestDb> {
        let base = base_url(test)?;
        let mut bytes = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut bytes);
        let name = format!(
            "dtr_test_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        admin_connection(&base)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let mut url = url::Url::parse(&base).expect("DTR_TEST_POSTGRES_URL is a postgres:// URL");
        url.set_path(&format!("/{name}"));
        Some(TestDb {
            url: url.to_string(),
            base,
            name,
        })
    }

    /// A plain connection to the test database.
    pub async fn connect(&self) -> tokio_postgres::Client {
        admin_connection(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime (or while unwinding from a
        // failed assertion): do the async work on a thread of its own.
        let (base, name) = (self.base.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let c = admin_connection(&base).await;
                let _ = c
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}
