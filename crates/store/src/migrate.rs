//! The schema: one set of migrations, embedded at compile time, run on SQLite and PostgreSQL.
//!
//! # Why one portable set (and application-allocated ids)
//!
//! DESIGN.md promises "same schema, same migrations" on both engines, so there is exactly one
//! directory, `migrations/`, and every file in it must be valid on both. The only real
//! incompatibility for our schema is the auto-incrementing id (`INTEGER PRIMARY KEY
//! AUTOINCREMENT` is SQLite-only, `BIGSERIAL`/`IDENTITY` PostgreSQL-only). Two directories with
//! "the same logical schema" would double every future migration (chat, bans, gifts, lottery)
//! and let the two drift apart unnoticed. Instead ids come from the `id_sequences` table: the
//! inserting transaction bumps the table's counter with `UPDATE ... RETURNING`, which both
//! engines serialise (a row lock on PostgreSQL, the write lock on SQLite), so ids are unique,
//! increasing and never reused even with the CLI and the server writing at once. Ids stay small
//! integers, which `roomcast key revoke KEY_ID` wants.
//!
//! # Rules for a new migration
//!
//! * Name it `NNNN_what.sql` (next number) and add it to [`MIGRATIONS`]; a test fails if a file
//!   is not listed. Never edit an applied migration: the checksum is verified on start.
//! * Column types: `BIGINT` (ids, counts, unix-millisecond timestamps, booleans as 0/1) and
//!   `TEXT` only. Through `sqlx::Any` these decode as `i64` and `String` on both engines.
//! * Portable statements only: `CREATE TABLE`/`INDEX`, `REFERENCES ... ON DELETE CASCADE`,
//!   multi-row `INSERT ... VALUES`, no engine functions in defaults. `ALTER TABLE ... ADD
//!   COLUMN` is fine; dropping or renaming columns needs care on old SQLite.
//! * A new table with ids adds its row to `id_sequences` in the same migration.
//! * Tests run every migration on both engines, so a non-portable statement fails CI.
//!
//! `sqlx::migrate!()` would read the directory for us, but it needs sqlx's `macros` feature,
//! which the workspace does not enable; `include_str!` embeds the same files at compile time
//! through sqlx's public `Migrator::with_migrations`.

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// Every migration, in order: (version, description, SQL).
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "rooms and keys",
        include_str!("../migrations/0001_rooms_and_keys.sql"),
    ),
    (
        2,
        "chat history, bans, gifts and lottery results",
        include_str!("../migrations/0002_chat.sql"),
    ),
    (
        3,
        "room host tokens and the moderation queue",
        include_str!("../migrations/0003_host_tokens_and_moderation.sql"),
    ),
];

/// The migrator for [`MIGRATIONS`], with sqlx's defaults (`_sqlx_migrations` table, locking,
/// each migration in a transaction).
pub(crate) fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        assert_eq!(files.len(), MIGRATIONS.len(), "files: {files:?}");
        for (file, &(version, _, sql)) in files.iter().zip(MIGRATIONS) {
            let number: i64 = file.split('_').next().unwrap().parse().unwrap();
            assert_eq!(number, version, "{file}");
            let on_disk = std::fs::read_to_string(dir.join(file)).unwrap();
            assert_eq!(on_disk, sql, "{file} differs from the embedded SQL");
        }
    }

    #[test]
    fn migrations_use_only_portable_types() {
        for &(version, _, sql) in MIGRATIONS {
            // Comments may name what is forbidden; only the statements count.
            let code: String = sql
                .lines()
                .map(|l| l.split("--").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            let upper = code.to_ascii_uppercase();
            for word in [
                "AUTOINCREMENT",
                "SERIAL",
                "IDENTITY",
                "BLOB",
                "BYTEA",
                "BOOLEAN",
                "TIMESTAMP",
                "JSONB",
                "NOW()",
                "DATETIME",
            ] {
                assert!(
                    !upper.contains(word),
                    "migration {version} uses non-portable {word}"
                );
            }
        }
    }
}
