//! Security regressions: exchange.
