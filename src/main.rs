//! The `arch` binary: parse, run, map the outcome to an exit code.

fn main() -> std::process::ExitCode {
    arch::cmd::main()
}
