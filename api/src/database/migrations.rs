//! The migrations this binary carries compared with the ones the database has recorded, and
//! the one way this service applies them.

use std::fmt;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, RuntimeErr, Statement,
    sqlx::{self, Connection, PgConnection},
};

/// Key of the PostgreSQL advisory lock held while migrating, so that replicas started together
/// do not run the same migration twice. Any constant works; this one spells "stations".
const MIGRATION_LOCK_KEY: i64 = 0x7374_6174_696f_6e73;

/// Migration names, sorted by where they exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationState {
    /// Known to this binary and applied, oldest first.
    pub applied: Vec<String>,
    /// Known to this binary and not applied yet, oldest first.
    pub pending: Vec<String>,
    /// Recorded in the database but unknown to this binary: the schema is newer than the code.
    pub unknown: Vec<String>,
}

impl MigrationState {
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }
}

/// Reads the migration table without creating it, so that it works for a read-only user and
/// changes nothing on a database that was never migrated.
pub async fn state(db: &impl ConnectionTrait) -> Result<MigrationState, DbErr> {
    let backend = db.get_database_backend();
    let table_exists = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT to_regclass('seaql_migrations') IS NOT NULL AS present",
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "present"))
        .transpose()?
        .unwrap_or(false);
    let recorded: Vec<String> = if table_exists {
        db.query_all_raw(Statement::from_string(
            backend,
            "SELECT version FROM seaql_migrations ORDER BY version",
        ))
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "version"))
        .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };

    let known: Vec<String> = Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let (applied, pending) = known
        .iter()
        .cloned()
        .partition(|name| recorded.contains(name));
    let unknown = recorded
        .into_iter()
        .filter(|name| !known.contains(name))
        .collect();
    Ok(MigrationState {
        applied,
        pending,
        unknown,
    })
}

/// What the migration command should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStep {
    /// Apply pending migrations: all of them, or this many.
    Up(Option<u32>),
    /// Revert this many applied migrations, newest first.
    Down(u32),
    /// Drop every table and type, then apply every migration.
    Fresh,
}

/// Runs `step` while holding the migration lock, and returns the state afterwards.
pub async fn run(db: &DatabaseConnection, step: MigrationStep) -> Result<MigrationState, DbErr> {
    // The lock lives on a connection of its own, outside the pool: a pool of one connection
    // would otherwise have none left to migrate with.
    let options = db.get_postgres_connection_pool().connect_options();
    let mut lock = PgConnection::connect_with(&options)
        .await
        .map_err(conn_err)?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut lock)
        .await
        .map_err(conn_err)?;

    let result = match step {
        MigrationStep::Up(steps) => Migrator::up(db, steps).await,
        MigrationStep::Down(steps) => Migrator::down(db, Some(steps)).await,
        MigrationStep::Fresh => Migrator::fresh(db).await,
    };

    // Closing the session releases the lock even if the unlock statement fails.
    let _ = lock.close().await;
    result?;
    state(db).await
}

/// The schema is not the one this binary was built for.
#[derive(Debug, thiserror::Error)]
pub enum SchemaNotCurrent {
    #[error("{}", describe_pending(.0))]
    Pending(Vec<String>),
    #[error(
        "the database has {} migration(s) this binary does not know: {}. This binary is older \
         than the schema: deploy the release that added them",
        .0.len(), .0.join(", ")
    )]
    Unknown(Vec<String>),
    #[error("could not read or apply migrations: {0}")]
    Database(#[from] DbErr),
}

fn describe_pending(pending: &[String]) -> String {
    format!(
        "the database is not up to date: {} pending migration(s): {}. Apply them with \
         `stations-api migrate up` (or `sea-orm-cli migrate up` from the repository root), or \
         set database.migrate_on_start = true (APP__DATABASE__MIGRATE_ON_START=true)",
        pending.len(),
        pending.join(", ")
    )
}

/// At start-up: applies pending migrations when `migrate_on_start` allows it, and otherwise
/// refuses a database that is behind or ahead of this binary.
pub async fn prepare_schema(
    db: &DatabaseConnection,
    migrate_on_start: bool,
) -> Result<(), SchemaNotCurrent> {
    let current = state(db).await?;
    if !current.unknown.is_empty() {
        return Err(SchemaNotCurrent::Unknown(current.unknown));
    }
    if current.pending.is_empty() {
        return Ok(());
    }
    if !migrate_on_start {
        return Err(SchemaNotCurrent::Pending(current.pending));
    }
    tracing::info!(
        pending = current.pending.join(", "),
        "applying {} pending migration(s)",
        current.pending.len()
    );
    let after = run(db, MigrationStep::Up(None)).await?;
    if !after.unknown.is_empty() {
        return Err(SchemaNotCurrent::Unknown(after.unknown));
    }
    tracing::info!("database schema is up to date");
    Ok(())
}

fn conn_err(error: sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(error.into()))
}

impl fmt::Display for MigrationState {
    /// One line per migration, as `migrate status` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for name in &self.applied {
            writeln!(f, "applied  {name}")?;
        }
        for name in &self.pending {
            writeln!(f, "pending  {name}")?;
        }
        for name in &self.unknown {
            writeln!(
                f,
                "unknown  {name}  (recorded in the database, not in this binary)"
            )?;
        }
        Ok(())
    }
}
