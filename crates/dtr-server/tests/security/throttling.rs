//! Security regressions: throttling.
