// The same rule as dtr-server's build script: PostgreSQL tests are
// reported as ignored without DTR_TEST_POSTGRES_URL outside CI.
include!("../dtr-server/build.rs");
