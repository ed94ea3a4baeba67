//! `BARLOW_SIMD`: a level that does not exist is refused with the accepted values, and
//! `loader bench --json` reports the level that ran (a capped level as its own peer,
//! `barlow@LEVEL`).

mod common;

use std::path::Path;

fn bench(dir: &Path, simd: &str) -> std::process::Output {
    common::command(env!("CARGO_BIN_EXE_loader"))
        .env("BARLOW_SIMD", simd)
        .args(["bench", "--json", "--workers", "1", "--batch-size", "2"])
        .args(["--seconds", "0.2", "--warmup", "0", "--dir"])
        .arg(dir)
        .output()
        .unwrap()
}

/// A one-class folder holding two copies of a golden JPEG.
fn two_image_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("n0");
    std::fs::create_dir(&class).unwrap();
    let jpeg =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../views/tests/golden/src_ladybird_q90.jpg");
    for i in 0..2 {
        std::fs::copy(&jpeg, class.join(format!("{i}.JPEG"))).unwrap();
    }
    dir
}

#[test]
fn bench_reports_the_simd_level_and_refuses_unknown_ones() {
    let dir = two_image_folder();

    let o = bench(dir.path(), "avx3");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("BARLOW_SIMD=avx3 is not a level")
            && views::simd::LEVELS
                .iter()
                .all(|&(name, _)| err.contains(name)),
        "{err}"
    );

    // Scalar runs on every CPU; the best level here is whatever the CPU has.
    let o = bench(dir.path(), "scalar");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["simd"], "scalar");
    assert_eq!(v["peer"], "barlow@scalar");
    let o = bench(dir.path(), "");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["simd"], views::simd::name_of(views::simd::cpu_level()));
    assert_eq!(v["peer"], "barlow");
}

/// `loader bench --json` names the decoder (`decoder`), and a non-default one is its own peer.
#[test]
fn bench_names_the_decoder() {
    let dir = two_image_folder();
    let run = |flags: &[&str]| {
        let o = common::command(env!("CARGO_BIN_EXE_loader"))
            .env_remove("BARLOW_SIMD") // a capped level would name the peer `...@LEVEL`
            .args(["bench", "--json", "--workers", "1", "--batch-size", "2"])
            .args(["--seconds", "0.2", "--warmup", "0", "--dir"])
            .arg(dir.path())
            .args(flags)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (
            v["decoder"].as_str().unwrap().to_string(),
            v["peer"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(run(&[]), ("turbo (region)".into(), "barlow".into()));
    assert_eq!(
        run(&["--decoder", "zune"]),
        ("zune".into(), "barlow-zune".into())
    );
    assert_eq!(
        run(&["--decoder", "turbo", "--full-decode"]),
        ("turbo (full)".into(), "barlow-turbo-full".into())
    );
    let o = common::command(env!("CARGO_BIN_EXE_loader"))
        .args(["bench", "--decoder", "libjpeg"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected zune or turbo"));
}
