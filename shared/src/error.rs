//! [`RingError`]: everything that can go wrong with a ring, phrased for the person running
//! the loader or trainer (what happened, then what to do about it).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Errors from naming, creating, attaching to and using a ring.
#[derive(Debug)]
pub enum RingError {
    /// The ring name is not a valid `/dev/shm` name or absolute path.
    BadName {
        /// The name as given.
        name: String,
        /// Which rule it broke.
        reason: String,
    },
    /// An operating-system call on the ring file failed.
    Io {
        /// The ring file (or directory) involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
        /// What was being done, e.g. "could not create the ring file".
        context: String,
    },
    /// The filesystem holding the ring cannot hold all of it.
    NoSpace {
        /// The ring file that could not be reserved.
        path: PathBuf,
        /// Bytes the ring needs.
        needed: u64,
        /// Bytes free on that filesystem, if known.
        available: Option<u64>,
    },
    /// A live producer (pid alive, heartbeat fresh) already owns a ring at this path.
    InUse {
        /// The owning producer's pid.
        pid: u32,
        /// The ring file.
        path: PathBuf,
    },
    /// A live consumer already reads this ring; only one may.
    ConsumerInUse {
        /// The attached consumer's pid.
        pid: u32,
    },
    /// The file does not start with [`crate::MAGIC`].
    BadMagic {
        /// The file that was opened.
        path: PathBuf,
    },
    /// The ring was written by a build with another [`crate::FORMAT_VERSION`].
    VersionMismatch {
        /// Version found in the header.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
    /// The header or a slot is inconsistent (with itself or with the file size).
    Corrupt {
        /// What exactly is wrong.
        reason: String,
    },
    /// No ready ring appeared at the path in time.
    Timeout {
        /// The ring file waited for.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The producer process is gone (no such pid) or stopped updating its heartbeat.
    ProducerDied {
        /// The producer's pid as recorded in the header.
        pid: u32,
    },
    /// The producer marked the ring aborted and every published batch has been read.
    ProducerAborted,
    /// The caller's stop flag was raised while waiting.
    Interrupted,
    /// The requested ring shape is out of bounds or too large to address.
    BadGeometry {
        /// Which bound was broken.
        reason: String,
    },
    /// The ring file belongs to another user (see [`crate::ownership`]).
    NotOwned {
        /// The ring file.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// The ring file is writable by group or others (see [`crate::ownership`]).
    UnsafeMode {
        /// The ring file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A producer asked to take over a ring that declares another stream.
    StreamMismatch {
        /// The ring file.
        path: PathBuf,
        /// One "field: the ring has X, this one Y" per difference.
        differences: Vec<String>,
    },
    /// The ring's producer stopped its heartbeat but its process still exists (hung or
    /// stopped), so the ring can be neither taken over nor replaced safely.
    ProducerUnresponsive {
        /// The producer's pid.
        pid: u32,
        /// The ring file.
        path: PathBuf,
    },
    /// Another producer took this ring over (this one was presumed dead).
    ProducerReplaced {
        /// The new producer's pid.
        pid: u32,
    },
    /// The producer died and no new one took the ring over within the consumer's restart wait.
    NoNewProducer {
        /// The dead producer's pid.
        pid: u32,
        /// How long the consumer waited.
        waited: Duration,
    },
}

/// Formats a byte count as a short human string (e.g. `1.5 GiB`).
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::BadName { name, reason } => write!(
                f,
                "invalid ring name {name:?}: {reason}. Use a name of 1-64 characters from [A-Za-z0-9._-] \
                 (other than \".\" and \"..\"), which is placed in /dev/shm, or an absolute path whose directory exists"
            ),
            RingError::Io { path, source, context } => {
                write!(f, "{context} ({}): {source}; check that the path is right and writable by this user", path.display())
            }
            RingError::NoSpace { path, needed, available } => {
                write!(f, "not enough space for the ring {}: it needs {} ({needed} bytes)", path.display(), human_bytes(*needed))?;
                match available {
                    Some(a) => write!(f, " but only {} ({a} bytes) is free there", human_bytes(*a))?,
                    None => write!(f, " and the filesystem refused to reserve it")?,
                }
                write!(
                    f,
                    ". Make /dev/shm larger (Docker: `--shm-size=8g`; or `mount -o remount,size=8G /dev/shm`), \
                     use fewer slots, a smaller batch or image size, or put the ring on a bigger filesystem with \
                     `--shm /absolute/path` (same path for loader and trainer)"
                )
            }
            RingError::InUse { pid, path } => write!(
                f,
                "the ring {} is in use by a running loader (pid {pid}); stop that loader first, or give this one \
                 another ring name with `--shm`",
                path.display()
            ),
            RingError::ConsumerInUse { pid } => write!(
                f,
                "another trainer (pid {pid}) is attached to this ring and still alive; only one reader is allowed. \
                 Stop it first, or run a second loader with another `--shm` name"
            ),
            RingError::BadMagic { path } => write!(
                f,
                "{} is not a barlow ring (wrong magic bytes); check that loader and trainer use the same `--shm` \
                 name, and delete the file if it is a leftover",
                path.display()
            ),
            RingError::VersionMismatch { found, expected } if found < expected => write!(
                f,
                "the ring uses format version {found}, older than this program's {expected} (version 3 \
                 describes the recipe's view groups, for recipes of several views and sizes): it was \
                 written by an older loader; restart the loader from the same build as this reader"
            ),
            RingError::VersionMismatch { found, expected } => write!(
                f,
                "the ring uses format version {found} but this program understands version {expected}; \
                 rebuild the loader and the trainer from the same source"
            ),
            RingError::Corrupt { reason } => write!(
                f,
                "the ring is corrupt or inconsistent: {reason}. Restart the loader to recreate it \
                 (and make sure nothing else writes to that file)"
            ),
            RingError::Timeout { path, waited } => write!(
                f,
                "no ready ring appeared at {} within {:.1}s; start the loader first (with the same `--shm` name), \
                 or wait longer",
                path.display(),
                waited.as_secs_f64()
            ),
            RingError::ProducerDied { pid } => write!(
                f,
                "the loader (pid {pid}) died or stopped updating its heartbeat; check its output, then restart it \
                 (a restarted trainer can attach to the new ring)"
            ),
            RingError::ProducerAborted => write!(
                f,
                "the loader aborted the ring (it was interrupted or failed) before the planned end; \
                 check the loader's output and restart it"
            ),
            RingError::Interrupted => write!(f, "interrupted by a stop request"),
            RingError::BadGeometry { reason } => write!(
                f,
                "invalid ring geometry: {reason}; choose a smaller or nonzero batch size, slot count or image size"
            ),
            RingError::NotOwned { path, owner, me } => write!(
                f,
                "refusing the ring {}: it belongs to uid {owner}, not to this user (uid {me}), so its batches \
                 could be anyone's data. If it is a leftover, have its owner (or root) remove it; otherwise use \
                 another `--shm` name. To use another account's ring on purpose, pass `--allow-foreign-ring` \
                 (root too is held to this rule without it)",
                path.display()
            ),
            RingError::UnsafeMode { path, mode } => write!(
                f,
                "refusing the ring {}: its mode {mode:04o} lets group or others write it, so someone else could \
                 change its batches. Remove it (`rm {}`) and start the loader again, which creates rings with \
                 mode 0600",
                path.display(),
                path.display()
            ),
            RingError::StreamMismatch { path, differences } => write!(
                f,
                "refusing to take over the ring {}, whose trainer is still attached: it was made for another \
                 stream ({}). Restart the loader with the options the ring was made with (the same command), \
                 or stop the trainer first to start a new stream",
                path.display(),
                differences.join("; ")
            ),
            RingError::ProducerUnresponsive { pid, path } => write!(
                f,
                "the loader (pid {pid}) of the ring {} stopped updating its heartbeat but its process still \
                 exists (hung or stopped); stop it for good (`kill -9 {pid}`) and start the loader again",
                path.display()
            ),
            RingError::ProducerReplaced { pid } => write!(
                f,
                "another loader (pid {pid}) took this ring over while this one was not responding; \
                 this one stops so that only one writes the ring"
            ),
            RingError::NoNewProducer { pid, waited } => write!(
                f,
                "the loader (pid {pid}) died and no new loader took the ring over within {:.0}s; \
                 restart the loader with the same command and restart the trainer (with `--resume` to \
                 continue from its checkpoint), or allow more time with `--loader-restart-wait`",
                waited.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for RingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RingError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl RingError {
    /// Builds an [`RingError::Io`].
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        context: impl Into<String>,
        source: io::Error,
    ) -> RingError {
        RingError::Io {
            path: path.into(),
            source,
            context: context.into(),
        }
    }

    /// Builds a [`RingError::Corrupt`].
    pub(crate) fn corrupt(reason: impl Into<String>) -> RingError {
        RingError::Corrupt {
            reason: reason.into(),
        }
    }
}
