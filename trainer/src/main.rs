//! `trainer`: Barlow Twins pre-training fed by `loader` through a shared-memory ring.
//!
//! The arguments and what each subcommand runs live in the library ([`trainer::cli`]).

use clap::Parser;
use trainer::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => cli.train.run(),
        Some(Command::CheckDevices(args)) => args.run(),
        Some(Command::Bench(args)) => args.run(),
        Some(Command::StepDump(args)) => args.run(),
        Some(Command::Export(args)) => args.run(),
        Some(Command::Eval(args)) => args.run(),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("trainer: error: {e:#}");
            std::process::exit(1);
        }
    }
}
