//! What the loader's integration tests share.

use std::process::Command;

/// `program` as a command: through `BARLOW_TEST_RUNNER` (words split on whitespace, e.g.
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu`) where it is set, as `scripts/test-aarch64.sh` does
/// for binaries of another architecture (cargo's runner runs the test binary itself, not what
/// the test starts).
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let runner = std::env::var("BARLOW_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(first) => {
            let mut c = Command::new(first);
            c.args(words).arg(program);
            c
        }
        None => Command::new(program),
    }
}
