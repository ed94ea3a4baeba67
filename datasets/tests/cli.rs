//! End-to-end checks of the `datasets` binary.

use std::path::Path;
use std::process::{Command, Output};

fn datasets(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_datasets"))
        .args(args)
        .output()
        .expect("run datasets binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn demo_then_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let out_s = out.to_str().unwrap();
    let o = datasets(&[
        "demo",
        "--out",
        out_s,
        "--classes",
        "3",
        "--per-class",
        "4",
        "--min-side",
        "32",
        "--max-side",
        "64",
        "--seed",
        "5",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("3 classes") && stdout.contains("12 images") && stdout.contains("MB"),
        "{stdout}"
    );
    assert!(Path::new(out_s)
        .join("n02_squares/n02_squares_0003.JPEG")
        .is_file());

    let o = datasets(&["scan", "--dir", out_s]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("classes: 3"), "{stdout}");
    assert!(stdout.contains("images: 12"), "{stdout}");
    assert!(stdout.contains("n01_stripes"), "{stdout}");
    assert!(stdout.contains("skipped: 0"), "{stdout}");
}

#[test]
fn scan_lists_first_20_classes_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    for c in 0..25 {
        let d = tmp.path().join(format!("c{c:02}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("x.jpg"), b"").unwrap();
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(tmp.path().join("gone"), tmp.path().join("c00/dead.jpg")).unwrap();
    let o = datasets(&["scan", "--dir", tmp.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("classes: 25") && stdout.contains("images: 25"),
        "{stdout}"
    );
    assert!(
        stdout.contains("c19") && !stdout.contains("c20"),
        "{stdout}"
    );
    assert!(stdout.contains("... (5 more classes)"), "{stdout}");
    #[cfg(unix)]
    assert!(
        stdout.contains("skipped: 1")
            && stdout.contains("dead.jpg")
            && stdout.contains("broken symlink"),
        "{stdout}"
    );
}

#[test]
fn errors_exit_1_with_message() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let o = datasets(&["scan", "--dir", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("does not exist"),
        "{stderr}"
    );

    let o = datasets(&[
        "demo",
        "--out",
        tmp.path().to_str().unwrap(),
        "--classes",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).starts_with("error: "),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn help_describes_commands() {
    let o = datasets(&["--help"]);
    assert!(o.status.success());
    let s = text(&o.stdout);
    assert!(
        s.contains("demo") && s.contains("scan") && s.contains("<class>"),
        "{s}"
    );
    let o = datasets(&["demo", "--help"]);
    let s = text(&o.stdout);
    for flag in [
        "--out",
        "--classes",
        "--per-class",
        "--min-side",
        "--max-side",
        "--seed",
    ] {
        assert!(s.contains(flag), "{flag} missing from {s}");
    }
}
