//! Tells the user when a trainer attaches to or leaves one of the loader's rings.
//!
//! A background thread looks at each ring's header (read-only, through [`shared::Observer`])
//! twice a second. When the trainer dies, the loader keeps its ring: it fills the free slots and
//! then waits, sleeping, until a new trainer attaches and continues from the next unconsumed batch.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::ProgressBar;
use shared::Observer;

/// The watching thread; it stops when dropped.
pub struct ConsumerWatch {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ConsumerWatch {
    /// Watches `paths`, printing changes above `bar`.
    pub fn spawn(paths: Vec<PathBuf>, bar: ProgressBar) -> ConsumerWatch {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::Builder::new()
            .name("loader-watch".into())
            .spawn(move || watch(paths, bar, &flag))
            .ok();
        ConsumerWatch { done, thread }
    }
}

impl Drop for ConsumerWatch {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(paths: Vec<PathBuf>, bar: ProgressBar, done: &AtomicBool) {
    let observers: Vec<Option<Observer>> = paths.iter().map(|p| Observer::open(p).ok()).collect();
    let mut last: Vec<(bool, u32)> = vec![(false, 0); paths.len()];
    while !done.load(Ordering::Relaxed) {
        for ((path, observer), last) in paths.iter().zip(&observers).zip(last.iter_mut()) {
            let Some(observer) = observer else { continue };
            let snap = observer.snapshot();
            let now = (snap.consumer_alive, snap.consumer_pid);
            if now != *last {
                match (last.0, now.0) {
                    (false, true) => say(&bar, format!(
                        "loader: trainer (pid {}) attached to {} at batch {}",
                        now.1,
                        path.display(),
                        snap.consumed
                    )),
                    (true, false) => say(&bar, format!(
                        "loader: the trainer (pid {}) on {} is gone; keeping the ring, {} batches unread, until a trainer attaches again",
                        last.1,
                        path.display(),
                        snap.written - snap.consumed
                    )),
                    _ => {}
                }
                *last = now;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Prints above the progress bar, or plainly when the bar is hidden (stderr not a terminal).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
