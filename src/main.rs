//! The `sandspec` command: parses arguments and calls the library.
use clap::Parser;

fn main() {
    let cli = sandspec::cli::Cli::parse();
    std::process::exit(sandspec::cli::main(cli));
}
