//! Security regressions: grants.
