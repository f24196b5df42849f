//! `missive bench`: the side-by-side benchmarks are not part of this tool, which would otherwise
//! link every system they compare against (rust-libp2p, tonic, tarpc, protosocket-rpc,
//! connect). The command says where they are.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Any options of the harness (see `cargo run -p missive-bench -- --list`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let mut command = String::from("cargo run --release -p missive-bench --");
    for a in &args.args {
        command.push(' ');
        command.push_str(a);
    }
    eprintln!(
        "missive: the benchmarks are the missive-bench binary, which links every system they\n\
         compare against. From the source tree, run:\n    {command}"
    );
    Ok(ExitCode::from(2))
}
