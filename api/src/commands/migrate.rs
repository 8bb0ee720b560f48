//! `stations-api migrate …` and `stations-api db create`: the database's schema, and the
//! database itself.

use clap::Subcommand;

use super::{Failure, load_settings};
use crate::configuration::Environment;
use crate::database::{self, migrations};

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateAction {
    /// Apply pending migrations.
    Up {
        /// Apply at most this many.
        #[arg(short, long)]
        num: Option<u32>,
    },
    /// Revert applied migrations, newest first.
    Down {
        /// How many to revert.
        #[arg(short, long, default_value_t = 1)]
        num: u32,
    },
    /// List every migration and whether it is applied.
    Status,
    /// Drop every table, then apply every migration (refused when APP_ENV=production).
    Fresh,
}

pub async fn run(action: MigrateAction) -> Result<String, Failure> {
    let settings = load_settings()?;
    if matches!(action, MigrateAction::Fresh) && settings.environment == Environment::Production {
        return Err(Failure::usage(
            "`migrate fresh` drops every table; it is refused when APP_ENV=production",
        ));
    }
    let db = database::connect_with_retry(&settings.database)
        .await
        .map_err(Failure::runtime)?;
    let step = match action {
        MigrateAction::Up { num } => Some(migrations::MigrationStep::Up(num)),
        MigrateAction::Down { num } => Some(migrations::MigrationStep::Down(num)),
        MigrateAction::Fresh => Some(migrations::MigrationStep::Fresh),
        MigrateAction::Status => None,
    };
    let state = match step {
        Some(step) => migrations::run(&db, step).await,
        None => migrations::state(&db).await,
    }
    .map_err(|error| Failure::runtime(format!("migration failed: {error}")))?;
    Ok(state.to_string())
}

/// Creates the database named in `database.url`, owned by the URL's user.
pub async fn create_database() -> Result<String, Failure> {
    let settings = load_settings()?;
    let name = settings.database.target().database;
    match database::create_database(&settings.database).await {
        Ok(database::Created::Created) => Ok(format!("created database {name:?}\n")),
        Ok(database::Created::AlreadyExisted) => Ok(format!("database {name:?} already exists\n")),
        Err(message) => Err(Failure::runtime(message)),
    }
}
