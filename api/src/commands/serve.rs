//! `stations-api serve` (the default): the server, until a stop signal.

use super::{Failure, load_settings};
use crate::startup::{Application, shutdown_signal};

pub async fn run() -> Result<(), Failure> {
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
