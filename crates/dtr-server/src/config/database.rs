//! `database` and `database_pool_size`: which database the server uses.

use super::{err, ConfigError};

/// The database the server uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
}

pub(super) fn parse_database(raw: &str) -> Result<DatabaseUrl, ConfigError> {
    if let Some(path) = raw.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(err("database", "sqlite:// needs a file path"));
        }
        return Ok(DatabaseUrl::Sqlite(path.into()));
    }
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        return Ok(DatabaseUrl::Postgres(raw.to_owned()));
    }
    Err(err(
        "database",
        format!("'{raw}' must start with sqlite:// or postgres://"),
    ))
}

/// `database_pool_size`, 10 when absent. Each node holds this many
/// connections; PostgreSQL's default `max_connections` is 100, shared by
/// every node.
pub(super) fn pool_size(raw: Option<u32>) -> Result<u32, ConfigError> {
    let database_pool_size = raw.unwrap_or(10);
    if !(1..=1000).contains(&database_pool_size) {
        return Err(err("database_pool_size", "must be between 1 and 1000"));
    }
    Ok(database_pool_size)
}
