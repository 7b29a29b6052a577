// Marks the build `dtr_no_postgres` when `DTR_TEST_POSTGRES_URL` is unset
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
}
