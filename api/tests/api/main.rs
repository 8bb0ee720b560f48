//! Black-box tests: the real server over real HTTP, on a real PostgreSQL database per test.

mod bad_input;
mod cli;
mod clients;
mod container;
mod diagnostics;
mod geo;
mod health;
mod helpers;
mod http;
mod ide;
mod import;
mod jwt;
mod live;
mod migrations;
mod mutations;
mod observations;
mod outage;
mod pagination;
mod persisted_queries;
mod pgbouncer;
mod production;
mod queries;
mod replicas;
mod round_trips;
mod scram_cluster;
mod subscriptions;
