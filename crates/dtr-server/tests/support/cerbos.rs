//! A real Cerbos PDP for the AuthZEN end-to-end tests: the Linux binary
//! of the npm package `@cerbos/cerbos-linux-x64` (installed by `.ci/run`
//! with `npm ci` in `interop/cerbos`, or named by `DTR_CERBOS_BIN`),
//! started on free loopback ports with a policy directory the test
//! writes, telemetry off, and killed when dropped.
//!
//! Without the binary the tests are compiled as ignored on a developer's
//! machine (the build script sets `dtr_no_cerbos`; each such test carries
//! `#[cfg_attr(dtr_no_cerbos, ignore = ...)]`), and a run that still
//! reaches them prints a `SKIPPED` line; under `CI=true` they fail, as
//! the PostgreSQL tests do (`support/pg.rs`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable naming the binary, when it is not the npm package's.
pub const BIN_ENV: &str = "DTR_CERBOS_BIN";

/// The binary; `None` (after printing a notice) when it is missing
/// outside CI.
pub fn binary(test: &str) -> Option<PathBuf> {
    let path = std::env::var(BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../interop/cerbos/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64")
        });
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "Cerbos is missing at {} but CI=true: the AuthZEN end-to-end tests must run in CI \
             (.ci/run installs it with npm ci in interop/cerbos)",
            path.display()
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: Cerbos not found at {}; run `npm ci` in interop/cerbos or set {BIN_ENV}",
        path.display()
    );
    None
}

/// A running Cerbos.
pub struct Cerbos {
    /// Its base URL (`http://127.0.0.1:PORT`), the PDP identifier.
    pub base: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Cerbos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts Cerbos with `policies` (file name, YAML) and waits until its
/// AuthZEN metadata answers; `None` when skipped.
pub async fn start(test: &str, policies: &[(&str, &str)]) -> Option<Cerbos> {
    let bin = binary(test)?;
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policies");
    std::fs::create_dir(&pol).unwrap();
    for (name, yaml) in policies {
        std::fs::write(pol.join(name), yaml).unwrap();
    }
    let (http, grpc) = (free_port(), free_port());
    let conf = dir.path().join("cerbos.yaml");
    std::fs::write(
        &conf,
        format!(
            "server:\n  httpListenAddr: \"127.0.0.1:{http}\"\n  grpcListenAddr: \"127.0.0.1:{grpc}\"\n\
             storage:\n  driver: disk\n  disk:\n    directory: \"{}\"\n    watchForChanges: false\n\
             telemetry:\n  disabled: true\n",
            pol.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("cerbos.log")).unwrap();
    let child = Command::new(&bin)
        .arg("server")
        .arg(format!("--config={}", conf.display()))
        .env("CERBOS_NO_TELEMETRY", "1")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let c = Cerbos {
        base: format!("http://127.0.0.1:{http}"),
        child,
        _dir: dir,
    };
    let url = format!("{}/.well-known/authzen-configuration", c.base);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(&url).await {
            if r.status().is_success() {
                return Some(c);
            }
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(c._dir.path().join("cerbos.log")).unwrap_or_default();
            panic!("Cerbos did not come up:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
