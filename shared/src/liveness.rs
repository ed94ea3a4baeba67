//! Is the other process still there? Pids, pid namespaces and heartbeats.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::layout::offset;
use crate::map::Mapping;

/// How often producer and consumer refresh their heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);
/// A heartbeat older than this means the process is gone or hung (consumer default, and the
/// rule `Producer::create` uses to decide whether an existing ring may be replaced).
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(3);
/// While waiting for a batch the consumer checks the producer at least this often.
pub const LIVENESS_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Milliseconds since the UNIX epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether a process with this pid exists: `kill(pid, 0)` succeeds or fails with `EPERM`.
/// Pid 0 and pids that do not fit a positive `pid_t` are never alive (and are never signalled).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence/permission check; pid > 0 so it can
    // never address a process group.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if r == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// An id of this process's pid namespace (inode of `/proc/self/ns/pid`), 0 if unknown.
pub fn pid_namespace() -> u64 {
    static NS: OnceLock<u64> = OnceLock::new();
    *NS.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/pid")
            .map(|m| m.ino())
            .unwrap_or(0)
    })
}

/// Whether a heartbeat written at `beat_ms` is younger than `stale_after`. 0 is never fresh.
pub fn heartbeat_fresh(beat_ms: u64, stale_after: Duration) -> bool {
    beat_ms != 0 && now_ms().saturating_sub(beat_ms) <= stale_after.as_millis() as u64
}

/// Whether a peer is considered dead: no pid, a stale heartbeat, or (in our pid namespace) no
/// such process.
pub(crate) fn peer_dead(pid: u32, pidns: u64, beat_ms: u64, stale_after: Duration) -> bool {
    if pid == 0 || !heartbeat_fresh(beat_ms, stale_after) {
        return true;
    }
    in_our_namespace(pidns) && !pid_alive(pid)
}

/// Whether a pid recorded with pid namespace `pidns` can be checked with `kill()` from here.
fn in_our_namespace(pidns: u64) -> bool {
    let mine = pid_namespace();
    pidns == 0 || mine == 0 || pidns == mine
}

/// Whether the process `pid` (recorded with `pidns`) visibly still exists: in our pid namespace
/// and `kill(pid, 0)` finds it. A process in another namespace is never visible.
pub(crate) fn process_visible(pid: u32, pidns: u64) -> bool {
    in_our_namespace(pidns) && pid_alive(pid)
}

/// One end of a ring, for reading its pid, pid namespace and heartbeat from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The writing end.
    Producer,
    /// The reading end.
    Consumer,
}

/// A side's recorded pid, pid namespace and heartbeat, as read from the header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SideRecord {
    pub(crate) pid: u32,
    pub(crate) pidns: u64,
    pub(crate) beat_ms: u64,
}

impl SideRecord {
    /// Reads `side`'s fields from the mapped header.
    pub(crate) fn read(map: &Mapping, side: Side) -> SideRecord {
        let (pid, ns, beat) = match side {
            Side::Producer => (
                offset::PRODUCER_PID,
                offset::PRODUCER_PIDNS,
                offset::PRODUCER_HEARTBEAT,
            ),
            Side::Consumer => (
                offset::CONSUMER_PID,
                offset::CONSUMER_PIDNS,
                offset::CONSUMER_HEARTBEAT,
            ),
        };
        SideRecord {
            pid: map.u32_at(pid).load(Ordering::Acquire),
            pidns: map.u64_at(ns).load(Ordering::Relaxed),
            beat_ms: map.u64_at(beat).load(Ordering::Acquire),
        }
    }

    /// Whether this side counts as dead with a heartbeat older than `stale_after`.
    pub(crate) fn dead(&self, stale_after: Duration) -> bool {
        peer_dead(self.pid, self.pidns, self.beat_ms, stale_after)
    }
}

/// A thread storing `now_ms()` into one header field every [`HEARTBEAT_INTERVAL`]; stops
/// (promptly) and is joined on drop.
pub(crate) struct Heartbeat {
    stop: Option<Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts beating into the `AtomicU64` at header offset `offset`.
    pub(crate) fn spawn(
        name: &str,
        map: Arc<Mapping>,
        offset: usize,
    ) -> std::io::Result<Heartbeat> {
        let (tx, rx) = mpsc::channel::<()>();
        // Validate the offset now (panics on a bad offset are bugs in this crate).
        let _ = map.u64_at(offset);
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let beat: &AtomicU64 = map.u64_at(offset);
                loop {
                    beat.store(now_ms(), Ordering::Release);
                    match rx.recv_timeout(HEARTBEAT_INTERVAL) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        _ => break,
                    }
                }
            })?;
        Ok(Heartbeat {
            stop: Some(tx),
            handle: Some(handle),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
