//! `stations-api rollups refresh | verify | rebuild`: the hourly rollup of observations
//! against the raw rows. Every replica of the server refreshes it in the background; these
//! are for before a server runs (after a bulk import), after a restore of one table without
//! the other, or to prove it exact.

use std::time::Instant;

use clap::Subcommand;

use super::{Failure, connect_migrated, load_settings};
use crate::service::rollup;

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum RollupsAction {
    /// Count into the rollup every hour that writes noted, now, as the server does in the
    /// background.
    Refresh,
    /// Refresh, then compare every hour of the rollup with the raw rows; exit 1 when any
    /// differs.
    Verify,
    /// Fill the rollup again from the raw rows (writes to observations wait meanwhile), then
    /// verify it.
    Rebuild,
}

pub async fn run(action: RollupsAction) -> Result<String, Failure> {
    let settings = load_settings()?;
    let db = connect_migrated(&settings).await?;
    let mut report = String::new();
    if let RollupsAction::Refresh | RollupsAction::Verify = action {
        let started = Instant::now();
        let notes = rollup::drain(&db, settings.database.rollup_refresh_batch_hours as i64)
            .await
            .map_err(|error| Failure::runtime(format!("refreshing the rollup failed: {error}")))?;
        report.push_str(&format!(
            "refreshed observations_hourly: {notes} noted writes counted in {:.1} s\n",
            started.elapsed().as_secs_f64()
        ));
        if let RollupsAction::Refresh = action {
            return Ok(report);
        }
    }
    if let RollupsAction::Rebuild = action {
        let started = Instant::now();
        let written = rollup::rebuild(&db)
            .await
            .map_err(|error| Failure::runtime(format!("rebuilding the rollup failed: {error}")))?;
        report.push_str(&format!(
            "rebuilt observations_hourly: {written} station-hours in {:.1} s\n",
            started.elapsed().as_secs_f64()
        ));
    }
    let started = Instant::now();
    let verification = rollup::verify(&db)
        .await
        .map_err(|error| Failure::runtime(format!("verifying the rollup failed: {error}")))?;
    let summary = format!(
        "observations_hourly: {} station-hours checked in {:.1} s: {} missing, {} extra, {} \
         differing\n",
        verification.hours,
        started.elapsed().as_secs_f64(),
        verification.missing,
        verification.extra,
        verification.differing
    );
    report.push_str(&summary);
    if verification.is_exact() {
        return Ok(report);
    }
    Err(Failure {
        stdout: report,
        message: format!(
            "the hourly rollup differs from the observations (for example {}): run \
             `stations-api rollups rebuild`",
            verification.examples.join(", ")
        ),
        exit_code: std::process::ExitCode::FAILURE,
    })
}
