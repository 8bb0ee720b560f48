//! The command line: `stations-api [serve | migrate … | schema | doctor | import … | export |
//! rollups … | healthcheck | token new | db create]`, and what each command does, a file per
//! command.

pub mod doctor;
pub mod export;
pub mod healthcheck;
pub mod import;
pub mod migrate;
pub mod rollups;
pub mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::{path::PathBuf, sync::Arc};

use sea_orm::DatabaseConnection;

use crate::configuration::Settings;
use crate::database::{self, migrations};
use crate::{auth, graphql, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "stations-api",
    version,
    about = "GraphQL API over PostgreSQL stations"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GraphQL over HTTP (the default).
    Serve,
    /// Apply, revert or list database migrations.
    Migrate {
        #[command(subcommand)]
        action: migrate::MigrateAction,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Check configuration, network, credentials, database, migrations and schema, in order.
    Doctor {
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage the database itself.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Load stations from a CSV or GeoJSON file (or synthetic ones), all or nothing; or, with
    /// `import observations`, observations from a CSV file (or a demo year of them).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Import {
        #[command(subcommand)]
        what: Option<ImportWhat>,
        /// The file to import; its extension (.csv, .geojson, .json) gives the format.
        #[arg(required_unless_present = "demo", conflicts_with = "demo")]
        file: Option<PathBuf>,
        /// The file's format, when its extension does not tell.
        #[arg(long, value_enum)]
        format: Option<import::Format>,
        /// What to do with a station whose code already exists.
        #[arg(long, value_enum, default_value_t)]
        on_conflict: import::OnConflict,
        /// Import the valid rows and write the bad ones to this file, verbatim.
        #[arg(long, value_name = "PATH")]
        reject_file: Option<PathBuf>,
        /// Instead of a file, N synthetic stations (the same N every time).
        #[arg(long, value_name = "N")]
        demo: Option<u64>,
    },
    /// Write every station as CSV or GeoJSON, to FILE or standard output.
    Export {
        /// Default: from FILE's extension, else CSV.
        #[arg(long, value_enum)]
        format: Option<import::Format>,
        /// CSV for spreadsheets: a text cell starting with =, +, -, @, a tab or a carriage
        /// return gets a leading ' so that it is not run as a formula. Not for `import`.
        #[arg(long)]
        spreadsheet_safe: bool,
        file: Option<PathBuf>,
    },
    /// Check the hourly rollup of observations against the raw rows, or fill it again.
    Rollups {
        #[command(subcommand)]
        action: rollups::RollupsAction,
    },
    /// Bearer tokens for mutations.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Ask a running server's /health/ready; exit 0 when it is ready (container healthchecks).
    Healthcheck {
        /// Defaults to http://127.0.0.1:<server.port>/health/ready.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportWhat {
    /// Observations from CSV with the header
    /// station_code,observed_at,temperature_c,pressure_hpa,humidity_pct,precipitation_mm
    /// (any order; measurements optional, one per row at least), all or nothing. Observations
    /// already stored (same station and instant) are counted as duplicates and left alone.
    Observations {
        /// The CSV file to import.
        #[arg(required_unless_present = "demo", conflicts_with = "demo")]
        file: Option<PathBuf>,
        /// Import the valid rows and write the bad ones to this file, verbatim.
        #[arg(long, value_name = "PATH")]
        reject_file: Option<PathBuf>,
        /// Instead of a file, hourly observations up to now for the first stations by id (the
        /// same values every time for the same station and hour).
        #[arg(long)]
        demo: bool,
        /// With --demo: for how many stations.
        #[arg(long, default_value_t = 10, requires = "demo")]
        stations: u64,
        /// With --demo: how many days back.
        #[arg(long, default_value_t = 365, requires = "demo")]
        days: u32,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum TokenAction {
    /// Print a new random token and the SHA-256 hash to put in auth.token_sha256.
    New,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum DbAction {
    /// Create the database named in database.url, owned by the URL's user.
    Create,
}

/// A command that failed: what it printed on standard output anyway, the message for the
/// user, and the process exit code.
#[derive(Debug)]
pub struct Failure {
    pub stdout: String,
    pub message: String,
    pub exit_code: ExitCode,
}

impl Failure {
    /// The configuration or the command line is wrong: nothing was attempted.
    pub(crate) fn usage(message: impl ToString) -> Self {
        Self {
            stdout: String::new(),
            message: message.to_string(),
            exit_code: ExitCode::from(2),
        }
    }

    /// The command was attempted and failed.
    pub(crate) fn runtime(message: impl ToString) -> Self {
        Self {
            stdout: String::new(),
            message: message.to_string(),
            exit_code: ExitCode::FAILURE,
        }
    }
}

/// Runs `cli`'s command and returns what it prints on standard output.
pub async fn run(cli: Cli) -> Result<String, Failure> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve::run().await.map(|()| String::new()),
        Command::Migrate { action } => migrate::run(action).await,
        Command::Rollups { action } => rollups::run(action).await,
        Command::Schema => Ok(graphql::sdl()),
        Command::Healthcheck { url } => healthcheck::command(url).await,
        Command::Doctor { json } => doctor::command(json).await,
        Command::Import {
            what:
                Some(ImportWhat::Observations {
                    file,
                    reject_file,
                    demo,
                    stations,
                    days,
                }),
            ..
        } => {
            let source = match file {
                Some(path) if !demo => import::observations::ObservationSource::File(path),
                _ => import::observations::ObservationSource::Demo { stations, days },
            };
            import_observations(source, reject_file).await
        }
        Command::Import {
            what: None,
            file,
            format,
            on_conflict,
            reject_file,
            demo,
        } => {
            let source = match (file, demo) {
                (_, Some(count)) => import::Source::Demo { count },
                (Some(path), None) => {
                    let format = format.or_else(|| import::Format::from_path(&path)).ok_or_else(|| {
                        Failure::usage(format!(
                            "cannot tell the format of {} from its extension: pass --format csv or --format geojson",
                            path.display()
                        ))
                    })?;
                    import::Source::File { path, format }
                }
                (None, None) => return Err(Failure::usage("give a FILE to import, or --demo N")),
            };
            import_stations(
                source,
                import::Options {
                    on_conflict,
                    reject_file,
                },
            )
            .await
        }
        Command::Export {
            format,
            spreadsheet_safe,
            file,
        } => export::command(format, spreadsheet_safe, file).await,
        Command::Token {
            action: TokenAction::New,
        } => {
            let (token, hash) = auth::new_token()
                .map_err(|error| Failure::runtime(format!("no randomness available: {error}")))?;
            Ok(format!(
                "token:  {token}\nsha256: {hash}\n\nGive the token to the client (Authorization: \
                 Bearer <token>) and configure the hash:\n  APP__AUTH__TOKEN_SHA256={hash}\n"
            ))
        }
        Command::Db {
            action: DbAction::Create,
        } => migrate::create_database().await,
    }
}

/// The database of `settings`, with the schema this binary knows: importing into another
/// would fail half-way, so a command says so first.
async fn connect_migrated(settings: &Settings) -> Result<DatabaseConnection, Failure> {
    let db = connect(settings).await?;
    migrations::prepare_schema(&db, settings.database.migrate_on_start)
        .await
        .map_err(Failure::runtime)?;
    Ok(db)
}

/// The database of `settings`, retried while it starts.
async fn connect(settings: &Settings) -> Result<DatabaseConnection, Failure> {
    database::connect_with_retry(&settings.database)
        .await
        .map_err(Failure::runtime)
}

fn load_settings() -> Result<Settings, Failure> {
    let settings = Settings::load().map_err(Failure::usage)?;
    telemetry::init(&settings.log, &settings.telemetry);
    Ok(settings)
}

async fn import_stations(
    source: import::Source,
    options: import::Options,
) -> Result<String, Failure> {
    let settings = load_settings()?;
    let (total_bytes, total_rows) = match &source {
        import::Source::File { path, .. } => (std::fs::metadata(path).ok().map(|m| m.len()), None),
        import::Source::Demo { count } => (None, Some(*count)),
    };
    let db = connect_migrated(&settings).await?;
    let progress = Arc::new(import::Progress::new(total_bytes, total_rows, true));
    let summary = import::run(&db, source, options, progress)
        .await
        .map_err(Failure::runtime)?;
    Ok(format!("{summary}\n"))
}

async fn import_observations(
    source: import::observations::ObservationSource,
    reject_file: Option<PathBuf>,
) -> Result<String, Failure> {
    let settings = load_settings()?;
    let (total_bytes, total_rows) = match &source {
        import::observations::ObservationSource::File(path) => {
            (std::fs::metadata(path).ok().map(|m| m.len()), None)
        }
        import::observations::ObservationSource::Demo { stations, days } => {
            (None, Some(stations * (u64::from(*days) * 24 + 1)))
        }
    };
    let db = connect_migrated(&settings).await?;
    let progress = Arc::new(import::Progress::new(total_bytes, total_rows, true));
    let summary = import::observations::run(&db, source, reject_file, progress)
        .await
        .map_err(Failure::runtime)?;
    Ok(format!("{summary}\n"))
}
