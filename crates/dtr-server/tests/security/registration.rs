//! Security regressions: registration.
