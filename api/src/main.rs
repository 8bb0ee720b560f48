use std::process::ExitCode;

use clap::Parser;
use stations_api::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    match cli::run(Cli::parse()).await {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            print!("{}", failure.stdout);
            eprintln!("error: {}", failure.message);
            failure.exit_code
        }
    }
}
