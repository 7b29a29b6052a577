//! Security regressions: pages.
