//! The command line: `stations-api [serve | migrate ... | schema]`, and what each command does.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::configuration::{Environment, Settings};
use crate::database::{self, migrations};
use crate::startup::{Application, shutdown_signal};
use crate::{auth, doctor, export, healthcheck, import};
use crate::{graphql, telemetry};
use std::{path::PathBuf, sync::Arc};

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
        action: MigrateAction,
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
    fn usage(message: impl ToString) -> Self {
        Self {
            stdout: String::new(),
            message: message.to_string(),
            exit_code: ExitCode::from(2),
        }
    }

    /// The command was attempted and failed.
    fn runtime(message: impl ToString) -> Self {
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
        Command::Serve => serve().await.map(|()| String::new()),
        Command::Migrate { action } => migrate(action).await,
        Command::Schema => Ok(graphql::sdl()),
        Command::Healthcheck { url } => healthcheck(url).await,
        Command::Doctor { json } => doctor(json).await,
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
        } => export_stations(format, spreadsheet_safe, file).await,
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
        } => create_database().await,
    }
}

fn load_settings() -> Result<Settings, Failure> {
    let settings = Settings::load().map_err(Failure::usage)?;
    telemetry::init(&settings.log);
    Ok(settings)
}

async fn serve() -> Result<(), Failure> {
    let settings = load_settings()?;
    tracing::info!(
        environment = %settings.environment,
        database = settings.database.redacted_url(),
        "starting"
    );
    let application = Application::build(&settings)
        .await
        .map_err(Failure::runtime)?;
    // Before "listening": whoever waits for that line may send SIGTERM at once.
    let stop = shutdown_signal();
    tracing::info!(
        address = format!("{}:{}", settings.server.host, application.port()),
        ide = settings.graphql.ide,
        "listening"
    );
    application
        .run_until(stop)
        .await
        .map_err(|error| Failure::runtime(format!("the server stopped with an error: {error}")))
}

async fn migrate(action: MigrateAction) -> Result<String, Failure> {
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

async fn healthcheck(url: Option<String>) -> Result<String, Failure> {
    let url = match url {
        Some(url) => url,
        None => {
            let settings = Settings::load().map_err(Failure::usage)?;
            // A server listening on every address is reached on loopback.
            let host = match settings.server.host.as_str() {
                "0.0.0.0" => "127.0.0.1",
                "::" | "[::]" => "[::1]",
                host => host,
            };
            format!("http://{host}:{}/health/ready", settings.server.port)
        }
    };
    healthcheck::probe(&url).await.map_err(Failure::runtime)
}

async fn doctor(json: bool) -> Result<String, Failure> {
    let report = doctor::run().await;
    let output = if json {
        report.to_json()
    } else {
        report.to_text()
    };
    if report.ok {
        return Ok(output);
    }
    let failed = report
        .checks
        .iter()
        .find(|check| check.status == doctor::Status::Failed)
        .map_or("a check", |check| check.check);
    Err(Failure {
        stdout: output,
        message: format!("doctor: \"{failed}\" failed"),
        exit_code: ExitCode::from(report.exit_code),
    })
}

async fn create_database() -> Result<String, Failure> {
    let settings = load_settings()?;
    let name = settings.database.target().database;
    match database::create_database(&settings.database).await {
        Ok(database::Created::Created) => Ok(format!("created database {name:?}\n")),
        Ok(database::Created::AlreadyExisted) => Ok(format!("database {name:?} already exists\n")),
        Err(message) => Err(Failure::runtime(message)),
    }
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
    let db = database::connect_with_retry(&settings.database)
        .await
        .map_err(Failure::runtime)?;
    // Importing into a schema this binary does not know would fail half-way; say so first.
    migrations::prepare_schema(&db, settings.database.migrate_on_start)
        .await
        .map_err(Failure::runtime)?;
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
    let db = database::connect_with_retry(&settings.database)
        .await
        .map_err(Failure::runtime)?;
    migrations::prepare_schema(&db, settings.database.migrate_on_start)
        .await
        .map_err(Failure::runtime)?;
    let progress = Arc::new(import::Progress::new(total_bytes, total_rows, true));
    let summary = import::observations::run(&db, source, reject_file, progress)
        .await
        .map_err(Failure::runtime)?;
    Ok(format!("{summary}\n"))
}

async fn export_stations(
    format: Option<import::Format>,
    spreadsheet_safe: bool,
    file: Option<PathBuf>,
) -> Result<String, Failure> {
    let settings = load_settings()?;
    let format = format
        .or_else(|| file.as_deref().and_then(import::Format::from_path))
        .unwrap_or(import::Format::Csv);
    if spreadsheet_safe && format != import::Format::Csv {
        return Err(Failure::usage(
            "--spreadsheet-safe is for CSV: GeoJSON is not opened as a spreadsheet",
        ));
    }
    let db = database::connect_with_retry(&settings.database)
        .await
        .map_err(Failure::runtime)?;
    let mut out: Box<dyn std::io::Write + Send> = match &file {
        Some(path) if path.as_os_str() != "-" => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|error| {
                Failure::runtime(format!("cannot create {}: {error}", path.display()))
            })?,
        )),
        _ => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let count = export::run(&db, format, spreadsheet_safe, &mut out)
        .await
        .map_err(Failure::runtime)?;
    tracing::info!(stations = count, "exported");
    Ok(String::new())
}
