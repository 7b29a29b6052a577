//! Security regressions: connections.
