//! The trust boundary: one regression test per way an attacker got
//! through it with the defaults and the documented configuration. Each
//! module holds the tests of one part of the boundary; every test failed
//! before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

mod connections;
mod exchange;
mod grants;
mod logs;
mod pages;
mod protocol;
mod registration;
mod throttling;
