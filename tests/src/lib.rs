//! Helpers for barlow's integration tests: locating (and if needed building) the real binaries,
//! unique ring names, and running processes with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace's target profile directory holding the binaries (e.g. `target/debug`).
fn bin_dir() -> PathBuf {
    // Test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Path to a workspace binary (`loader`, `trainer`, `datasets`), built once per test process so that
/// `cargo test` alone is enough.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = bin_dir();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "build", "--bins", "-p", "loader", "-p", "trainer", "-p", "datasets",
        ]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for the binaries");
        assert!(status.success(), "building the binaries failed");
    });
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} not found", path.display());
    path
}

/// A ring path unique to this test, inside `dir` (absolute, so tests never touch /dev/shm).
pub fn ring_in(dir: &Path, tag: &str) -> String {
    dir.join(format!("ring-{tag}")).display().to_string()
}

/// Runs `cmd` to completion, failing the test if it is still running after `limit` (a hang guard,
/// not a speed assertion).
pub fn run_with_deadline(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    wait_with_deadline(child, limit)
}

/// Waits for `child`, killing it and failing if it outlives `limit`.
pub fn wait_with_deadline(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collecting output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collecting output");
            panic!(
                "process still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes a small demo dataset (`classes` x `per_class` JPEGs) under `dir` with the real binary.
pub fn make_demo(dir: &Path, classes: u32, per_class: u32) -> PathBuf {
    let out = dir.join("demo");
    let status = Command::new(bin("datasets"))
        .args(["demo", "--out"])
        .arg(&out)
        .args([
            "--classes",
            &classes.to_string(),
            "--per-class",
            &per_class.to_string(),
        ])
        .status()
        .expect("running datasets demo");
    assert!(status.success());
    out
}

/// Sends `signal` to a child process.
pub fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on a pid we own; no memory is touched.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0, "kill failed");
}
