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

/// Set by `scripts/test.sh` around its `cargo test --workspace`, whose build has already made the
/// three binaries (their packages' own integration tests need them): they are used as they are. A
/// `cargo build` of them would resolve the dev-dependencies' features apart (resolver 2: `tempfile`
/// turns on features of `rustix`, which clap uses) and compile them a second time, ~2 minutes on
/// 2 cores.
pub const PREBUILT_BINS_ENV: &str = "BARLOW_TEST_PREBUILT_BINS";

/// Path to a workspace binary (`loader`, `trainer`, `datasets`), built once per test process so that
/// `cargo test` alone is enough (unless [`PREBUILT_BINS_ENV`] says the build already made them).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if std::env::var_os(PREBUILT_BINS_ENV).is_some() {
            return;
        }
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

/// Waits until the ring file `ring` exists, failing with the loader's stderr (when piped) if the
/// loader exits first or `limit` passes (a hang guard, not a speed assertion).
pub fn wait_for_ring(ring: &str, loader: &mut Child, limit: Duration) {
    let start = Instant::now();
    while !Path::new(ring).exists() {
        let exited = loader.try_wait().expect("try_wait");
        if exited.is_some() || start.elapsed() > limit {
            let _ = loader.kill();
            let status = loader.wait().expect("waiting for the loader");
            let mut err = String::new();
            if let Some(mut e) = loader.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the ring {ring} never appeared (loader: {status}); loader stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// Asserts that a finished process (`what`: its name, for the message) exited 0, showing its
/// stderr otherwise.
pub fn assert_succeeded(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
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

/// An encoded JPEG of a smooth test pattern.
pub fn jpeg(width: u16, height: u16, color: jpeg_encoder::ColorType, progressive: bool) -> Vec<u8> {
    jpeg_sampled(
        width,
        height,
        color,
        progressive,
        jpeg_encoder::SamplingFactor::R_4_2_0,
    )
}

/// Like [`jpeg`], with the chroma sampling given.
pub fn jpeg_sampled(
    width: u16,
    height: u16,
    color: jpeg_encoder::ColorType,
    progressive: bool,
    sampling: jpeg_encoder::SamplingFactor,
) -> Vec<u8> {
    let channels = match color {
        jpeg_encoder::ColorType::Luma => 1,
        jpeg_encoder::ColorType::Cmyk
        | jpeg_encoder::ColorType::CmykAsYcck
        | jpeg_encoder::ColorType::Ycck => 4,
        _ => 3,
    };
    let pixels: Vec<u8> = (0..width as usize * height as usize * channels)
        .map(|i| ((i / channels) % 251) as u8)
        .collect();
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 85);
    enc.set_progressive(progressive);
    enc.set_sampling_factor(sampling);
    enc.encode(&pixels, width, height, color)
        .expect("encoding a test JPEG");
    out
}

/// Rewrites the frame header (SOF) of a JPEG to declare `width x height`.
pub fn declare_size(mut jpeg: Vec<u8>, width: u16, height: u16) -> Vec<u8> {
    let sof = jpeg
        .windows(2)
        .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0 | 0xC1 | 0xC2))
        .expect("a SOF marker");
    // FF Cx, length (2), precision (1), height (2), width (2).
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

/// What the bad-input corpus holds: files that must decode, and files that must be skipped.
pub struct BadCorpus {
    pub root: PathBuf,
    /// File names (not paths) that must be decoded and used.
    pub good: Vec<String>,
    /// File names that must be skipped and reported.
    pub bad: Vec<String>,
}

/// The corpus of awkward inputs, in an ImageNet-style folder under `dir`, and which of
/// them `decoder` (`turbo` or `zune`, the loader's `--decoder`) must use or skip.
pub fn bad_corpus(dir: &Path, decoder: &str) -> BadCorpus {
    use jpeg_encoder::ColorType;
    use std::os::unix::ffi::OsStrExt;
    let root = dir.join("bad-corpus");
    let class = root.join("n00_mixed");
    std::fs::create_dir_all(&class).unwrap();
    std::fs::create_dir_all(root.join("n01_empty_class")).unwrap();
    let full = jpeg(96, 80, ColorType::Rgb, false);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut put = |name: &str, bytes: &[u8], is_good: bool| {
        std::fs::write(class.join(name), bytes).unwrap();
        if is_good {
            good.push(name.to_string())
        } else {
            bad.push(name.to_string())
        }
    };
    put("rgb.JPEG", &full, true);
    put("grey.JPEG", &jpeg(64, 64, ColorType::Luma, false), true);
    put(
        "progressive.JPEG",
        &jpeg(64, 48, ColorType::Rgb, true),
        true,
    );
    // An Adobe CMYK JPEG written by Pillow (the loader's golden), and a YCCK one: decoded.
    put(
        "cmyk.JPEG",
        include_bytes!("../../views/tests/golden/cmyk.jpg"),
        true,
    );
    put(
        "ycck.JPEG",
        &jpeg(40, 40, ColorType::CmykAsYcck, false),
        true,
    );
    // A CMYK file from the jpeg-encoder crate trips an internal assertion of zune-jpeg 0.4: the
    // panic must be caught and the file reported, never crash the loader. libjpeg-turbo (so
    // Pillow) decodes it.
    put(
        "cmyk_zune_crash.JPEG",
        &jpeg(40, 40, ColorType::Cmyk, false),
        decoder == "turbo",
    );
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, 32, 24);
        enc.set_color(png::ColorType::Rgb);
        enc.write_header()
            .unwrap()
            .write_image_data(&vec![90u8; 32 * 24 * 3])
            .unwrap();
    }
    put("png_named.JPEG", &png_bytes, true);
    put("truncated.JPEG", &full[..full.len() / 2], false);
    let mut with_eoi = full[..full.len() / 2].to_vec();
    with_eoi.extend_from_slice(&[0xFF, 0xD9]);
    // libjpeg (so Pillow) decodes this with a warning, the missing part grey; zune-jpeg does too.
    put("truncated_then_eoi.JPEG", &with_eoi, true);
    put("empty.JPEG", &[], false);
    put(
        "random.JPEG",
        &(0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<_>>(),
        false,
    );
    put("text.JPEG", b"this is not an image\n", false);
    put(
        "huge_16000.JPEG",
        &declare_size(full.clone(), 16000, 16000),
        false,
    );
    put(
        "huge_65500.JPEG",
        &declare_size(full.clone(), 65500, 65500),
        false,
    );
    // Ignored by extension, not an error: a text file.
    std::fs::write(class.join("notes.txt"), b"not an image").unwrap();
    // A broken symlink (skipped while scanning) and a non-UTF-8 name (a good JPEG).
    std::os::unix::fs::symlink(class.join("missing.JPEG"), class.join("dangling.JPEG")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.JPEG");
    std::fs::write(class.join(odd), &full).unwrap();
    good.push(odd.to_string_lossy().into_owned());
    // No read permission (only skipped when not running as root, who can read anything).
    let locked = class.join("locked.JPEG");
    std::fs::write(&locked, &full).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&locked).is_ok() {
        good.push("locked.JPEG".into())
    } else {
        bad.push("locked.JPEG".into())
    }
    BadCorpus { root, good, bad }
}

/// `trainer --shm RING --wait 60 --dry-run --digest`: drains a ring and prints one hash per batch.
pub fn digest_trainer(ring: &str) -> Command {
    let mut cmd = Command::new(bin("trainer"));
    cmd.args(["--shm", ring, "--wait", "60", "--dry-run", "--digest"]);
    cmd
}

/// `loader --dir DATA --shm RING`: a loader feeding one ring; add the run's own options.
pub fn loader_feeding(data: &Path, ring: &str) -> Command {
    let mut cmd = Command::new(bin("loader"));
    cmd.arg("--dir").arg(data).args(["--shm", ring]);
    cmd
}

/// Every value of the JSON field `key` in a process's stdout, one JSON object per line (lines
/// that are not JSON objects holding it are skipped).
pub fn json_field<T: serde::de::DeserializeOwned>(stdout: &[u8], key: &str) -> Vec<T> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get(key).cloned())
        .map(|v| serde_json::from_value(v).unwrap_or_else(|e| panic!("{key}: {e}")))
        .collect()
}
