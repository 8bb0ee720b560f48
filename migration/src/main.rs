//! `cargo run -p migration -- <command>`, and what `sea-orm-cli migrate <command>` runs.
//!
//! Reads the database URL from `--database-url`/`-u` or `DATABASE_URL` (also from `.env`).

use sea_orm_migration::cli;

#[tokio::main]
async fn main() {
    cli::run_cli(migration::Migrator).await;
}
