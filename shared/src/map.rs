//! The mapped ring file and safe accessors to its shared atomics (crate-internal).
//!
//! Invariants relied on by every `unsafe` block here:
//! * `raw` maps the whole ring file `MAP_SHARED`, starting at a page-aligned address, for as
//!   long as the `Mapping` lives (the file descriptor may be closed or the file unlinked;
//!   the mapping stays valid).
//! * Accessors check bounds and alignment, so an `&AtomicU*` handed out always points into
//!   the mapping at a naturally aligned offset. Atomics have interior mutability, so shared
//!   references to them are sound even though other threads and processes write the memory.
//! * Plain (non-atomic) header fields are only written by the producer before `state`
//!   leaves Initialising; readers copy them once with a volatile read after an `Acquire`
//!   load of `state`/`magic`, and validate the copy.
//! * Ring files are never truncated by this crate while mapped. A foreign process truncating
//!   the file would make accesses fault (SIGBUS); that cannot be defended against.

#![allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; MSRV is 1.80

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};

use crate::layout::{offset, Header, RingInfo, RingState, FORMAT_VERSION, HEADER_BYTES, MAGIC};
use crate::stats::Stats;
use crate::RingError;

/// [`MAGIC`] as the little-endian word it is stored as.
pub(crate) const MAGIC_WORD: u64 = u64::from_le_bytes(MAGIC);

/// A mapped ring file.
pub(crate) struct Mapping {
    raw: MmapRaw,
}

impl Mapping {
    /// Maps `len` bytes of `file`, read-write or read-only.
    pub(crate) fn map(file: &File, len: usize, writable: bool) -> std::io::Result<Mapping> {
        let mut opts = MmapOptions::new();
        opts.len(len);
        let raw = if writable {
            opts.map_raw(file)?
        } else {
            opts.map_raw_read_only(file)?
        };
        assert!(raw.len() == len && raw.as_ptr() as usize % 4096 == 0);
        Ok(Mapping { raw })
    }

    /// Length of the mapping.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// Start of the mapping.
    pub(crate) fn base(&self) -> *mut u8 {
        self.raw.as_mut_ptr()
    }

    /// The `AtomicU64` at byte `off`.
    pub(crate) fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(
            off % 8 == 0 && off.checked_add(8).is_some_and(|e| e <= self.len()),
            "bad atomic offset {off}"
        );
        // SAFETY: in bounds and 8-aligned (base is page-aligned); see the module invariants.
        unsafe { &*(self.base().add(off) as *const AtomicU64) }
    }

    /// The `AtomicU32` at byte `off`.
    pub(crate) fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(
            off % 4 == 0 && off.checked_add(4).is_some_and(|e| e <= self.len()),
            "bad atomic offset {off}"
        );
        // SAFETY: in bounds and 4-aligned; see the module invariants.
        unsafe { &*(self.base().add(off) as *const AtomicU32) }
    }

    /// The statistics block in the header.
    pub(crate) fn stats(&self) -> &Stats {
        assert!(self.len() >= HEADER_BYTES);
        // SAFETY: `Stats` is `repr(C)` over `[AtomicU64; 32]`, lies inside the header at an
        // 8-aligned offset (compile-time checked in layout.rs).
        unsafe { &*(self.base().add(offset::STATS) as *const Stats) }
    }

    /// `state`.
    pub(crate) fn state(&self) -> &AtomicU32 {
        self.u32_at(offset::STATE)
    }

    /// Current state, `None` if the header holds an unknown value.
    pub(crate) fn load_state(&self) -> Option<RingState> {
        RingState::from_u32(self.state().load(Ordering::Acquire))
    }

    /// A by-value copy of the header. Only meaningful after an `Acquire` load that showed
    /// the header complete (magic set, state past Initialising).
    pub(crate) fn read_header(&self) -> Header {
        assert!(self.len() >= HEADER_BYTES);
        // SAFETY: the header lies in bounds at a page-aligned address; `Header` is `repr(C)`
        // of integers/floats/atomics, valid for any bit pattern. A volatile read copies
        // whatever is there without assuming it is stable.
        unsafe { std::ptr::read_volatile(self.base() as *const Header) }
    }
}

/// Result of looking at a path that should hold a ring.
pub(crate) enum Probe {
    /// A complete, validated ring.
    Ready {
        map: Mapping,
        info: RingInfo,
        file: File,
    },
    /// Not (yet) a usable ring; `why` is the error to report if it stays like this
    /// (`None`: report a timeout).
    NotReady { why: Option<RingError> },
}

/// Opens and validates the ring at `path` without waiting. Errors that cannot resolve
/// themselves by waiting (bad magic, version) are returned at once.
pub(crate) fn probe(path: &Path, writable: bool) -> Result<Probe, RingError> {
    let file = match OpenOptions::new().read(true).write(writable).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Probe::NotReady { why: None })
        }
        Err(e) => return Err(RingError::io(path, "could not open the ring file", e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| RingError::io(path, "could not stat the ring file", e))?;
    crate::ownership::check(path, &meta)?;
    let len = meta.len();
    if len < HEADER_BYTES as u64 {
        // Either a producer between create and reserve, or junk.
        let mut head = [0u8; 8];
        let n = file.read_at(&mut head, 0).unwrap_or(0);
        if n == 8 && head != [0; 8] && head != MAGIC {
            return Err(RingError::BadMagic {
                path: path.to_path_buf(),
            });
        }
        return Ok(Probe::NotReady {
            why: Some(RingError::corrupt(format!(
                "{} is {len} bytes, smaller than the {HEADER_BYTES}-byte ring header (truncated?)",
                path.display()
            ))),
        });
    }
    let len_usize = usize::try_from(len)
        .map_err(|_| RingError::corrupt(format!("file size {len} is not addressable")))?;
    let map = Mapping::map(&file, len_usize, writable)
        .map_err(|e| RingError::io(path, "could not map the ring file", e))?;
    let magic = map.u64_at(offset::MAGIC).load(Ordering::Acquire);
    if magic == 0 {
        return Ok(Probe::NotReady { why: None });
    }
    if magic != MAGIC_WORD {
        return Err(RingError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    let version = map.u32_at(offset::VERSION).load(Ordering::Relaxed);
    if version != FORMAT_VERSION {
        return Err(RingError::VersionMismatch {
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    match map.load_state() {
        None => {
            return Err(RingError::corrupt(format!(
                "state is {}, not a known ring state",
                map.state().load(Ordering::Relaxed)
            )))
        }
        Some(RingState::Initialising) => return Ok(Probe::NotReady { why: None }),
        Some(_) => {}
    }
    let header = map.read_header();
    let info = RingInfo::from_header(&header, len)?;
    Ok(Probe::Ready { map, info, file })
}

/// Probes `path` every ~50 ms until it is a ready ring or `wait` has passed.
pub(crate) fn wait_ready(
    path: &Path,
    wait: Duration,
    writable: bool,
) -> Result<(Mapping, RingInfo, File), RingError> {
    let start = Instant::now();
    loop {
        match probe(path, writable)? {
            Probe::Ready { map, info, file } => return Ok((map, info, file)),
            Probe::NotReady { why } => {
                let waited = start.elapsed();
                if waited >= wait {
                    return Err(why.unwrap_or(RingError::Timeout {
                        path: path.to_path_buf(),
                        waited,
                    }));
                }
                std::thread::sleep((wait - waited).min(Duration::from_millis(50)));
            }
        }
    }
}

/// Waiting without burning a core: a brief spin, a few yields, then sleeps doubling from
/// 20 µs up to 2 ms.
pub(crate) struct Backoff {
    round: u32,
    sleep: Duration,
}

impl Backoff {
    const SPIN_ROUNDS: u32 = 10;
    const YIELD_ROUNDS: u32 = 4;
    const MAX_SLEEP: Duration = Duration::from_millis(2);

    pub(crate) fn new() -> Backoff {
        Backoff {
            round: 0,
            sleep: Duration::from_micros(20),
        }
    }

    /// Waits a little, longer each call.
    pub(crate) fn snooze(&mut self) {
        if self.round < Self::SPIN_ROUNDS {
            for _ in 0..(1u32 << self.round) {
                std::hint::spin_loop();
            }
        } else if self.round < Self::SPIN_ROUNDS + Self::YIELD_ROUNDS {
            std::thread::yield_now();
        } else {
            std::thread::sleep(self.sleep);
            self.sleep = (self.sleep * 2).min(Self::MAX_SLEEP);
        }
        self.round = self.round.saturating_add(1);
    }
}

impl Mapping {
    /// Byte offset of slot `i`, checked to lie wholly inside the mapping.
    pub(crate) fn slot_offset(&self, layout: &crate::layout::SlotLayout, i: usize) -> usize {
        i.checked_mul(layout.slot_bytes)
            .and_then(|o| o.checked_add(HEADER_BYTES))
            .filter(|o| {
                o.checked_add(layout.slot_bytes)
                    .is_some_and(|e| e <= self.len())
            })
            .expect("slot index out of range")
    }

    /// The `seq` word of slot `i`.
    pub(crate) fn slot_seq(&self, layout: &crate::layout::SlotLayout, i: usize) -> &AtomicU64 {
        self.u64_at(self.slot_offset(layout, i) + offset::SLOT_SEQ)
    }
}
