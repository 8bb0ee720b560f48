//! Black-box tests: the real server over real HTTP, on a real PostgreSQL database per test.

mod cli;
mod container;
mod diagnostics;
mod geo;
mod health;
mod helpers;
mod http;
mod ide;
mod import;
mod migrations;
mod mutations;
mod pagination;
mod queries;
mod scram_cluster;
