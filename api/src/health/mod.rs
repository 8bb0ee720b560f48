//! Is this replica fit to serve? The answer for orchestrators and load balancers
//! ([`endpoints`]: `/health/live`, `/health/ready`), and the watcher that knows whether the
//! database can be reached, which requests consult before waiting for it ([`database`]).
//! (`stations-api healthcheck`, the command a container runs to ask `/health/ready`, is in
//! `commands`.)

pub mod database;
pub mod endpoints;
