//! [`Producer::open`]: create a ring, or take over one whose producer died while its consumer
//! lives on (the protocol is the "Takeover" section of [`crate::layout`]).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::layout::{offset, RingInfo, RingState, MAX_POSITION};
use crate::liveness::{
    now_ms, pid_namespace, process_visible, Side, SideRecord, DEFAULT_STALE_AFTER,
};
use crate::map::{probe, Mapping, Probe};
use crate::{Producer, RingError};

/// What [`Producer::open`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// A new ring was created (there was none, or only one that no live consumer reads).
    Created,
    /// A live consumer's ring was taken over from its dead producer.
    TookOver(Takeover),
}

/// Where a taken-over ring stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Takeover {
    /// The dead producer's pid.
    pub previous_pid: u32,
    /// The live consumer's pid.
    pub consumer_pid: u32,
    /// The ring position the consumer reads next (when the ring was taken over).
    pub read_pos: u64,
    /// The first ring position the new producer writes.
    pub resume_pos: u64,
    /// Its stream position: the ring's `first_step + resume_pos`.
    pub resume_step: u64,
}

impl Takeover {
    /// Batches the dead producer published that the consumer had not read yet: they stay in
    /// the ring and are delivered unchanged.
    pub fn kept(&self) -> u64 {
        self.resume_pos - self.read_pos
    }
}

impl Producer {
    /// Like [`Producer::create`], except for a ring at `path` whose producer is dead while its
    /// consumer is alive (and waiting for a new producer): that ring is taken over instead of
    /// replaced. The consumer keeps its position; this producer continues at the first
    /// position the dead one did not publish ([`Producer::position`]; stream position
    /// [`Takeover::resume_step`]), rewriting any half-written slot.
    ///
    /// A takeover is refused with [`RingError::StreamMismatch`] if `info` declares another
    /// stream than the ring (see [`RingInfo::differences_from`]; the ring's `first_step` is
    /// kept), with [`RingError::ProducerUnresponsive`] if the old producer's heartbeat is stale
    /// but its process still exists, and with [`RingError::InUse`] if another producer won the
    /// race for it. Ownership is checked as everywhere ([`crate::ownership`]).
    pub fn open(path: &Path, info: &RingInfo) -> Result<(Producer, Opened), RingError> {
        info.validate()?;
        match take_over(path, info)? {
            Some((producer, takeover)) => Ok((producer, Opened::TookOver(takeover))),
            None => Ok((Producer::create(path, info)?, Opened::Created)),
        }
    }
}

/// The takeover, or `None` when the ring at `path` is not one to take over (then
/// [`Producer::create`] decides: it replaces a dead ring, refuses a live or foreign one).
fn take_over(path: &Path, info: &RingInfo) -> Result<Option<(Producer, Takeover)>, RingError> {
    let (map, ring, file) = match probe(path, true) {
        Ok(Probe::Ready { map, info, file }) => (map, info, file),
        Ok(Probe::NotReady { .. }) => return Ok(None),
        Err(e @ (RingError::NotOwned { .. } | RingError::UnsafeMode { .. })) => return Err(e),
        // Not a ring of this format: `create` refuses or replaces it.
        Err(_) => return Ok(None),
    };
    if !matches!(
        map.load_state(),
        Some(RingState::Running | RingState::EndOfData)
    ) {
        return Ok(None);
    }
    let producer = SideRecord::read(&map, Side::Producer);
    if !producer.dead(DEFAULT_STALE_AFTER) {
        return Err(RingError::InUse {
            pid: producer.pid,
            path: path.to_path_buf(),
        });
    }
    let consumer = SideRecord::read(&map, Side::Consumer);
    if consumer.dead(DEFAULT_STALE_AFTER) {
        return Ok(None);
    }
    if process_visible(producer.pid, producer.pidns) {
        return Err(RingError::ProducerUnresponsive {
            pid: producer.pid,
            path: path.to_path_buf(),
        });
    }
    let differences = info.differences_from(&ring);
    if !differences.is_empty() {
        return Err(RingError::StreamMismatch {
            path: path.to_path_buf(),
            differences,
        });
    }
    claim(&map, producer.pid, path)?;
    let (read_pos, resume_pos) = resume_positions(&map, &ring)?;
    let meta = file
        .metadata()
        .map_err(|e| RingError::io(path, "could not stat the ring file", e))?;
    let takeover = Takeover {
        previous_pid: producer.pid,
        consumer_pid: consumer.pid,
        read_pos,
        resume_pos,
        resume_step: ring.first_step + resume_pos,
    };
    let producer = Producer::start(path, ring, map, (meta.dev(), meta.ino()), resume_pos)?;
    Ok(Some((producer, takeover)))
}

/// Makes this process the ring's producer: fresh heartbeat, then a compare-and-swap of the
/// dead producer's pid for ours (a concurrent newcomer gets [`RingError::InUse`]).
fn claim(map: &Mapping, dead_pid: u32, path: &Path) -> Result<(), RingError> {
    map.u64_at(offset::PRODUCER_HEARTBEAT)
        .store(now_ms(), Ordering::Release);
    let me = std::process::id();
    if let Err(winner) = map.u32_at(offset::PRODUCER_PID).compare_exchange(
        dead_pid,
        me,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        return Err(RingError::InUse {
            pid: winner,
            path: path.to_path_buf(),
        });
    }
    map.u64_at(offset::PRODUCER_PIDNS)
        .store(pid_namespace(), Ordering::Relaxed);
    Ok(())
}

/// (the consumer's read position, the first position not published), repairing `write_pos`
/// if the dead producer published a slot but died before advancing it.
fn resume_positions(map: &Mapping, ring: &RingInfo) -> Result<(u64, u64), RingError> {
    let slots = ring.geometry.slots as u64;
    let layout = ring.geometry.slot_layout();
    let write_pos = map.u64_at(offset::WRITE_POS);
    let mut w = write_pos.load(Ordering::Acquire);
    if w > MAX_POSITION {
        return Err(RingError::corrupt(format!(
            "write position {w} is beyond any possible ring position ({MAX_POSITION})"
        )));
    }
    let seq = map
        .slot_seq(&layout, (w % slots) as usize)
        .load(Ordering::Acquire);
    // Position w free (seq == w), still holding w - slots unread (w + 1 - slots), published
    // (w + 1) or published and already read (w + slots).
    if seq == w + 1 || seq == w + slots {
        w += 1;
        write_pos.store(w, Ordering::Release);
    } else if !(seq == w || (w >= slots && seq == w + 1 - slots)) {
        return Err(RingError::corrupt(format!(
            "slot {} has sequence number {seq} at write position {w}; the ring cannot be taken over",
            w % slots
        )));
    }
    let r = map.u64_at(offset::READ_POS).load(Ordering::Acquire);
    if r > w || w > r.saturating_add(slots) {
        return Err(RingError::corrupt(format!(
            "read position {r} and write position {w} are impossible for a {slots}-slot ring"
        )));
    }
    Ok((r, w))
}
