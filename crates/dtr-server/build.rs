// Marks the build `dtr_no_postgres` (and `dtr_no_cerbos`) when `DTR_TEST_POSTGRES_URL` is unset
// outside CI, so that the PostgreSQL tests are reported as ignored rather
// than passing without having run. In CI (`CI=true`) they are never
// ignored: without the variable they fail (tests/support/pg.rs).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(dtr_no_postgres)");
    println!("cargo::rerun-if-env-changed=DTR_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=CI");
    let url = std::env::var("DTR_TEST_POSTGRES_URL").unwrap_or_default();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if url.trim().is_empty() && !ci {
        println!("cargo::rustc-cfg=dtr_no_postgres");
    }
    // The same for the AuthZEN tests against Cerbos (tests/support/cerbos.rs):
    // ignored when its binary is missing outside CI, failing in CI.
    println!("cargo::rustc-check-cfg=cfg(dtr_no_cerbos)");
    println!("cargo::rerun-if-env-changed=DTR_CERBOS_BIN");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let bin = std::env::var("DTR_CERBOS_BIN").unwrap_or_else(|_| {
        format!("{manifest}/../../interop/cerbos/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64")
    });
    println!("cargo::rerun-if-changed={bin}");
    if !std::path::Path::new(&bin).is_file() && !ci {
        println!("cargo::rustc-cfg=dtr_no_cerbos");
    }
}
