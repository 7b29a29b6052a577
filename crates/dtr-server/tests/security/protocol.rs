//! Security regressions: protocol.
