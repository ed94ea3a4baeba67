//! A loader restarted under a running trainer, and rings that are not ours (issue 18), with the
//! real binaries: `trainer --dry-run --digest --loader-restart-wait` prints one hash per batch,
//! so a run whose loader was killed and restarted must print exactly what an uninterrupted run
//! prints, step for step, and the trainer must never exit in between.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use barlow_tests::{
    assert_succeeded, bin, digest_trainer, loader_feeding, make_demo, ring_in, run_with_deadline,
    signal, wait_for_ring, wait_with_deadline,
};

const LIMIT: Duration = Duration::from_secs(300);

/// The loader command every run here uses (the restarted loader runs exactly this again).
fn loader_cmd(data: &Path, shm: &str, extra: &[&str]) -> Command {
    loader_with_seed(data, shm, "5", extra)
}

/// [`loader_cmd`] with another seed.
fn loader_with_seed(data: &Path, shm: &str, seed: &str, extra: &[&str]) -> Command {
    let mut cmd = loader_feeding(data, shm);
    cmd.args(["--batch-size", "4", "--image-size", "16", "--seed", seed])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A digesting trainer whose stdout and stderr lines are collected as they come.
struct LiveTrainer {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    err_lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// A thread appending every line of `from` to the returned list.
fn collect_lines(
    from: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            sink.lock().unwrap().push(line.unwrap());
        }
    });
    (lines, reader)
}

impl LiveTrainer {
    fn spawn(ring: &str, extra: &[&str]) -> LiveTrainer {
        let mut child = digest_trainer(ring)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, out) = collect_lines(child.stdout.take().unwrap());
        let (err_lines, err) = collect_lines(child.stderr.take().unwrap());
        LiveTrainer {
            child,
            lines,
            err_lines,
            readers: vec![out, err],
        }
    }

    /// Blocks until the trainer has said something containing `what` on stderr.
    fn wait_for_message(&mut self, what: &str) {
        while !self
            .err_lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(what))
        {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the trainer exited ({status}) before saying {what:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Blocks until the trainer has printed `n` digests (fails if it exits first).
    fn wait_for_digests(&mut self, n: usize) {
        while self.lines.lock().unwrap().len() < n {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the trainer exited ({status}) before digest {n}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the end: (exit status, stderr, the digest lines without the total).
    fn finish(self) -> (Output, String, Vec<String>) {
        let out = wait_with_deadline(self.child, LIMIT);
        for reader in self.readers {
            reader.join().unwrap();
        }
        let err = self.err_lines.lock().unwrap().join("\n");
        let mut lines = self.lines.lock().unwrap().clone();
        assert!(
            lines.last().is_some_and(|l| l.starts_with("total ")),
            "{lines:?}"
        );
        lines.pop();
        (out, err, lines)
    }
}

/// An uninterrupted run's digests, one list per ring of `shm` (comma-separated).
fn uninterrupted(data: &Path, shm: &str, steps: &str) -> Vec<Vec<String>> {
    let loader = loader_cmd(data, shm, &["--steps", steps]).spawn().unwrap();
    let trainers: Vec<_> = shm.split(',').map(|r| LiveTrainer::spawn(r, &[])).collect();
    let digests = trainers
        .into_iter()
        .map(|t| {
            let (out, err, lines) = t.finish();
            assert!(out.status.success(), "trainer: {err}");
            lines
        })
        .collect();
    assert_succeeded("loader", &wait_with_deadline(loader, LIMIT));
    digests
}

/// Stops the loader at each (digests seen by the first trainer, signal) and starts it again with
/// the same command; returns each ring's digests, and the stderr of the loaders and trainers.
fn restarted(
    data: &Path,
    shm: &str,
    steps: &str,
    stops: &[(usize, i32)],
    before_restart: &mut dyn FnMut(usize),
) -> (Vec<Vec<String>>, String, Vec<String>) {
    // Slow enough that the loader is nearly always holding a slot it has not published yet
    // (it sleeps between filling a slot and publishing it): that is where it gets killed.
    let args = ["--steps", steps, "--throttle-ms", "100"];
    let mut loader = loader_cmd(data, shm, &args).spawn().unwrap();
    let mut trainers: Vec<_> = shm
        .split(',')
        .map(|r| LiveTrainer::spawn(r, &["--loader-restart-wait", "600"]))
        .collect();
    let mut loader_err = String::new();
    for (i, &(after, sig)) in stops.iter().enumerate() {
        trainers[0].wait_for_digests(after);
        signal(&loader, sig);
        let out = wait_with_deadline(loader, LIMIT);
        if sig == libc::SIGTERM {
            assert_eq!(
                out.status.code(),
                Some(130),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        loader_err += &String::from_utf8_lossy(&out.stderr);
        if i == 0 {
            // Once, let the trainer notice before a new loader comes (else it may never know).
            trainers[0].wait_for_message("is gone");
        }
        before_restart(i);
        loader = loader_cmd(data, shm, &args).spawn().unwrap();
    }
    let last = wait_with_deadline(loader, LIMIT);
    loader_err += &String::from_utf8_lossy(&last.stderr);
    assert_succeeded("the last loader", &last);
    let mut digests = Vec::new();
    let mut trainer_err = Vec::new();
    for t in trainers {
        let (out, err, lines) = t.finish();
        assert!(
            out.status.success(),
            "the trainer must never exit on the way: {err}"
        );
        digests.push(lines);
        trainer_err.push(err);
    }
    (digests, loader_err, trainer_err)
}

#[test]
fn a_loader_killed_mid_epoch_and_restarted_continues_the_stream_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 8); // 16 images: 4 steps per epoch at batch 4
    let reference = uninterrupted(&data, &ring_in(tmp.path(), "reference"), "24");
    assert_eq!(reference[0].len(), 24);
    let ring = ring_in(tmp.path(), "restarted");
    let mut refused = None;
    let (digests, loader_err, trainer_err) = restarted(
        &data,
        &ring,
        "24",
        // Mid-epoch 0, 2 and 3; the second one is Ctrl-C/SIGTERM, which leaves the ring to a
        // successor because the trainer waits for one.
        &[(2, libc::SIGKILL), (9, libc::SIGTERM), (14, libc::SIGKILL)],
        &mut |i| {
            if i == 0 {
                // Another seed than the ring's is refused, and changes nothing.
                refused = Some(run_with_deadline(
                    &mut loader_with_seed(&data, &ring, "6", &["--steps", "24"]),
                    LIMIT,
                ));
            }
        },
    );
    assert_eq!(
        digests[0], reference[0],
        "the same batches, none lost or repeated"
    );
    let refused = refused.unwrap();
    let refusal = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{refusal}");
    assert!(
        refusal.contains("seed: the ring has 5, this one 6"),
        "{refusal}"
    );
    assert_eq!(
        loader_err.matches("took over").count(),
        3,
        "every restart takes the ring over: {loader_err}"
    );
    assert!(
        loader_err.contains("resuming at global step"),
        "{loader_err}"
    );
    assert!(
        loader_err.contains("the ring is left in place"),
        "{loader_err}"
    );
    assert!(
        !Path::new(&ring).exists(),
        "the last loader removes the ring"
    );
    let _ = trainer_err;
}

#[test]
fn two_rings_from_one_loader_both_continue_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 16); // 32 images: 16 per rank, 4 steps per epoch
    let shm = |tag: &str| {
        format!(
            "{},{}",
            ring_in(tmp.path(), &format!("{tag}0")),
            ring_in(tmp.path(), &format!("{tag}1"))
        )
    };
    let reference = uninterrupted(&data, &shm("ref"), "12");
    assert_ne!(reference[0], reference[1], "two shards");
    let (digests, loader_err, trainer_err) = restarted(
        &data,
        &shm("live"),
        "12",
        &[(3, libc::SIGKILL), (6, libc::SIGKILL)],
        &mut |_| {},
    );
    assert_eq!(digests, reference);
    assert_eq!(loader_err.matches("took over").count(), 4, "{loader_err}");
    for err in &trainer_err {
        assert!(!err.contains("error"), "{err}");
    }
}

/// A live loader's ring, and what `trainer`, `loader stat` and a second `loader` say about it.
fn refusals(data: &Path, ring: &str, expect: &str) {
    let trainer = run_with_deadline(
        Command::new(bin("trainer")).args(["--shm", ring, "--wait", "5", "--dry-run"]),
        LIMIT,
    );
    let stat = run_with_deadline(
        Command::new(bin("loader")).args(["stat", "--shm", ring, "--count", "1"]),
        LIMIT,
    );
    let loader = run_with_deadline(&mut loader_cmd(data, ring, &["--steps", "10"]), LIMIT);
    for (what, out) in [
        ("trainer", trainer),
        ("loader stat", stat),
        ("loader", loader),
    ] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what} must refuse: {err}");
        assert!(err.contains(expect), "{what} says why ({expect}): {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn rings_writable_by_others_or_owned_by_another_user_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 8);
    let ring = ring_in(tmp.path(), "owner");
    let mut loader = loader_cmd(&data, &ring, &["--steps", "100000", "--throttle-ms", "50"])
        .spawn()
        .unwrap();
    wait_for_ring(&ring, &mut loader, LIMIT);
    std::fs::set_permissions(&ring, std::fs::Permissions::from_mode(0o666)).unwrap();
    refusals(&data, &ring, "mode 0666");
    std::fs::set_permissions(&ring, std::fs::Permissions::from_mode(0o600)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&ring, Some(12345), None).unwrap();
        refusals(&data, &ring, "belongs to uid 12345");
        let allowed = run_with_deadline(
            Command::new(bin("loader")).args([
                "stat",
                "--shm",
                &ring,
                "--count",
                "1",
                "--allow-foreign-ring",
            ]),
            LIMIT,
        );
        assert_succeeded("loader stat --allow-foreign-ring", &allowed);
        std::os::unix::fs::chown(&ring, Some(0), None).unwrap();
    } else {
        eprintln!("not root: cannot give the ring to another user; owner refusal not checked");
    }
    signal(&loader, libc::SIGTERM);
    let out = wait_with_deadline(loader, LIMIT);
    assert_eq!(out.status.code(), Some(130));
}
