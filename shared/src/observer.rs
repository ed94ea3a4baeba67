//! [`Observer`]: a read-only look at a ring (for status commands); never registers as consumer.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::layout::{offset, RingInfo, RingState};
use crate::liveness::{process_visible, Side, SideRecord, DEFAULT_STALE_AFTER};
use crate::map::{wait_ready, Mapping};
use crate::stats::STATS_LEN;
use crate::RingError;

/// Read-only attachment to a ring: maps it read-only and changes nothing.
pub struct Observer {
    path: PathBuf,
    info: RingInfo,
    map: Mapping,
}

/// A point-in-time view of a ring's shared state (fields are read one by one, not atomically together).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Ring state (an unknown header value reads as `Aborted`).
    pub state: RingState,
    /// Batches published.
    pub written: u64,
    /// Batches consumed.
    pub consumed: u64,
    /// Producer pid.
    pub producer_pid: u32,
    /// Consumer pid (0 = none attached).
    pub consumer_pid: u32,
    /// Producer pid alive and heartbeat younger than 3 s.
    pub producer_alive: bool,
    /// A consumer is attached, its pid alive and heartbeat younger than 3 s.
    pub consumer_alive: bool,
    /// The statistics block (index with [`crate::stat`]).
    pub stats: [u64; STATS_LEN],
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer")
            .field("path", &self.path)
            .field("geometry", &self.info.geometry)
            .finish()
    }
}

impl Observer {
    /// Opens the ring at `path` read-only, validating it like [`crate::Consumer::attach`];
    /// waits up to 1 s for a ring that is still initialising.
    pub fn open(path: &Path) -> Result<Observer, RingError> {
        Self::open_wait(path, Duration::from_secs(1))
    }

    /// Like [`Observer::open`], waiting up to `wait` for the ring to appear and become ready.
    pub fn open_wait(path: &Path, wait: Duration) -> Result<Observer, RingError> {
        let (map, info, _file) = wait_ready(path, wait, false)?;
        Ok(Observer {
            path: path.to_path_buf(),
            info,
            map,
        })
    }

    /// The ring file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the producer declared.
    pub fn info(&self) -> &RingInfo {
        &self.info
    }

    /// The producer's and the consumer's pids where they run in this pid namespace and exist, so
    /// that `/proc/<pid>` is that process (for its CPU time or command line); None otherwise.
    pub fn local_pids(&self) -> (Option<u32>, Option<u32>) {
        let local = |side| {
            let r = SideRecord::read(&self.map, side);
            (r.pid != 0 && process_visible(r.pid, r.pidns)).then_some(r.pid)
        };
        (local(Side::Producer), local(Side::Consumer))
    }

    /// Reads the ring's current shared state.
    pub fn snapshot(&self) -> Snapshot {
        let m = &self.map;
        let producer = SideRecord::read(m, Side::Producer);
        let consumer = SideRecord::read(m, Side::Consumer);
        Snapshot {
            state: m.load_state().unwrap_or(RingState::Aborted),
            written: m.u64_at(offset::WRITE_POS).load(Ordering::Acquire),
            consumed: m.u64_at(offset::READ_POS).load(Ordering::Acquire),
            producer_pid: producer.pid,
            consumer_pid: consumer.pid,
            producer_alive: !producer.dead(DEFAULT_STALE_AFTER),
            consumer_alive: !consumer.dead(DEFAULT_STALE_AFTER),
            stats: m.stats().snapshot(),
        }
    }
}
