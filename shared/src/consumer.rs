//! [`Consumer`]: attaches to a ring and takes batches in order.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::layout::{offset, RingInfo, RingState, SlotLayout, MAX_POSITION};
use crate::liveness::{
    now_ms, peer_dead, pid_namespace, Heartbeat, Side, SideRecord, DEFAULT_STALE_AFTER,
    LIVENESS_CHECK_INTERVAL,
};
use crate::map::{wait_ready, Backoff, Mapping};
use crate::stats::{stat, Stats};
use crate::RingError;

/// The reading side of a ring. At most one live consumer per ring.
pub struct Consumer {
    path: PathBuf,
    info: RingInfo,
    layout: SlotLayout,
    map: Arc<Mapping>,
    pos: u64,
    /// A batch at `pos` was taken and kept ([`Batch::keep`]): its slot is still ours.
    kept: bool,
    pid: u32,
    stale_after: Duration,
    registered: bool,
    heartbeat: Option<Heartbeat>,
    restart: RestartWait,
}

/// What happened to the producer, reported while a restart wait is set
/// ([`Consumer::set_restart_wait`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProducerEvent {
    /// The producer died; the consumer waits up to `wait` for a new one to take the ring over.
    Died {
        /// The dead producer's pid.
        pid: u32,
        /// How long the consumer will wait.
        wait: Duration,
    },
    /// A producer is alive again (normally a new one that took the ring over).
    Back {
        /// Its pid.
        pid: u32,
        /// How long the consumer waited.
        waited: Duration,
        /// The ring position the consumer reads next.
        position: u64,
    },
}

/// Whether and how long a consumer waits for a new producer, and how it tells its caller.
#[derive(Default)]
struct RestartWait {
    wait: Duration,
    notify: Option<Box<dyn FnMut(&ProducerEvent) + Send>>,
    /// Since when, and for which dead producer, it is waiting.
    waiting: Option<(Instant, u32)>,
}

impl RestartWait {
    fn emit(&mut self, event: ProducerEvent) {
        if let Some(notify) = self.notify.as_mut() {
            notify(&event);
        }
    }
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("path", &self.path)
            .field("geometry", &self.info.geometry)
            .field("position", &self.pos)
            .finish()
    }
}

impl Consumer {
    /// Opens and maps the ring, waiting up to `wait` (polling every ~50 ms) for the file to
    /// appear and its state to leave Initialising.
    ///
    /// Validates the magic ([`RingError::BadMagic`]), [`crate::FORMAT_VERSION`]
    /// ([`RingError::VersionMismatch`]) and every header field against the file size
    /// ([`RingError::Corrupt`]); a ring that never becomes ready gives
    /// [`RingError::Timeout`] (or `Corrupt` if the file is too short). Registers this process
    /// as the consumer (pid + heartbeat thread), refusing with [`RingError::ConsumerInUse`]
    /// while another live consumer holds the ring. Reading continues at the header's read
    /// position, so a restarted consumer loses nothing (a batch that was being read when the
    /// previous consumer died is delivered again).
    pub fn attach(path: &Path, wait: Duration) -> Result<Consumer, RingError> {
        let (map, info, _file) = wait_ready(path, wait, true)?;
        let map = Arc::new(map);
        let me = std::process::id();
        {
            let cpid = map.u32_at(offset::CONSUMER_PID);
            let beat = map.u64_at(offset::CONSUMER_HEARTBEAT);
            let ns = map.u64_at(offset::CONSUMER_PIDNS);
            loop {
                let cur = cpid.load(Ordering::Acquire);
                if cur != 0
                    && !peer_dead(
                        cur,
                        ns.load(Ordering::Relaxed),
                        beat.load(Ordering::Acquire),
                        DEFAULT_STALE_AFTER,
                    )
                {
                    return Err(RingError::ConsumerInUse { pid: cur });
                }
                // Fresh heartbeat before claiming, so a racing attacher never sees our pid
                // next to the dead consumer's stale heartbeat.
                beat.store(now_ms(), Ordering::Release);
                if cpid
                    .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    break;
                }
            }
            ns.store(pid_namespace(), Ordering::Relaxed);
            // A dead predecessor's promise to wait is not ours.
            map.u64_at(offset::CONSUMER_RESTART_WAIT)
                .store(0, Ordering::Release);
        }
        let mut consumer = Consumer {
            path: path.to_path_buf(),
            layout: info.geometry.slot_layout(),
            info,
            map,
            pos: 0,
            kept: false,
            pid: me,
            stale_after: DEFAULT_STALE_AFTER,
            registered: true,
            heartbeat: None,
            restart: RestartWait::default(),
        };
        // From here, dropping `consumer` unregisters.
        consumer.pos = consumer.resume_position()?;
        consumer.heartbeat = Some(
            Heartbeat::spawn(
                "ring-consumer-heartbeat",
                Arc::clone(&consumer.map),
                offset::CONSUMER_HEARTBEAT,
            )
            .map_err(|e| RingError::io(path, "could not start the consumer heartbeat thread", e))?,
        );
        Ok(consumer)
    }

    /// Where a new consumer starts: `read_pos`, repaired if the previous consumer died
    /// between releasing its slot and advancing `read_pos`.
    fn resume_position(&self) -> Result<u64, RingError> {
        let slots = self.info.geometry.slots as u64;
        let read_pos = self.map.u64_at(offset::READ_POS);
        let mut rp = read_pos.load(Ordering::Acquire);
        // A position near u64::MAX (a corrupt or hostile file) would overflow `pos + 1` and
        // `pos + slots` below; no real ring gets anywhere near MAX_POSITION.
        if rp > MAX_POSITION {
            return Err(RingError::corrupt(format!(
                "read position {rp} is beyond any possible ring position ({MAX_POSITION})"
            )));
        }
        if slots >= 2 {
            let s = self
                .map
                .slot_seq(&self.layout, (rp % slots) as usize)
                .load(Ordering::Acquire);
            if s >= rp.saturating_add(slots) {
                rp += 1;
                read_pos.store(rp, Ordering::Release);
            }
        }
        let wp = self.map.u64_at(offset::WRITE_POS).load(Ordering::Acquire);
        // write_pos is stored just after the seq it covers, so it may lag by one.
        if rp > wp.saturating_add(1) || wp > rp.saturating_add(slots) {
            return Err(RingError::corrupt(format!(
                "read position {rp} and write position {wp} are impossible for a {slots}-slot ring"
            )));
        }
        Ok(rp)
    }

    /// The ring file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the producer declared.
    pub fn info(&self) -> &RingInfo {
        &self.info
    }

    /// The ring position the next batch comes from (= batches consumed so far).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Current ring state.
    pub fn state(&self) -> RingState {
        self.map.load_state().unwrap_or(RingState::Aborted)
    }

    /// How old the producer's heartbeat may get before [`Consumer::next`] reports
    /// [`RingError::ProducerDied`] (default 3 s).
    pub fn set_stale_after(&mut self, d: Duration) {
        self.stale_after = d;
    }

    /// Wait up to `wait` for a new producer when the producer dies, instead of failing with
    /// [`RingError::ProducerDied`] (`Duration::ZERO`, the default, turns this off). Published
    /// batches are still delivered first; while waiting [`Consumer::next`] blocks, `notify` is
    /// told once that the producer died and once that one is back
    /// ([`ProducerEvent`]), and after `wait` it fails with [`RingError::NoNewProducer`]. The wait
    /// is recorded in the ring header, so a stopping producer can leave the ring for a
    /// successor ([`crate::Producer::hand_over`]).
    pub fn set_restart_wait(
        &mut self,
        wait: Duration,
        notify: impl FnMut(&ProducerEvent) + Send + 'static,
    ) {
        self.restart.wait = wait;
        self.restart.notify = Some(Box::new(notify));
        self.map.u64_at(offset::CONSUMER_RESTART_WAIT).store(
            wait.as_millis().clamp(0, u64::MAX as u128) as u64,
            Ordering::Release,
        );
    }

    /// The ring's live statistics block.
    pub fn stats(&self) -> &Stats {
        self.map.stats()
    }

    /// Next published batch, blocking without spinning a core (brief spin, then sleeps of
    /// up to ~2 ms). Everything published is delivered before any end condition:
    /// `Ok(None)` at the end of data, `Err(ProducerAborted)` if the producer aborted,
    /// `Err(ProducerDied)` if the producer's pid is gone or its heartbeat is older than
    /// [`Consumer::set_stale_after`] (checked every 50 ms while waiting), and
    /// `Err(ConsumerInUse)` if another consumer took the ring over.
    #[allow(clippy::should_implement_trait)] // a lending "next": Batch borrows the consumer
    pub fn next(&mut self) -> Result<Option<Batch<'_>>, RingError> {
        self.next_until(&AtomicBool::new(false))
    }

    /// Like [`Consumer::next`], but returns [`RingError::Interrupted`] as soon as `stop` is
    /// true while waiting.
    ///
    /// A batch kept with [`Batch::keep`] is released first.
    pub fn next_until(&mut self, stop: &AtomicBool) -> Result<Option<Batch<'_>>, RingError> {
        self.release_kept();
        self.check_owner()?;
        let slots = self.info.geometry.slots as u64;
        let pos = self.pos;
        let slot = (pos % slots) as usize;
        let map = Arc::clone(&self.map);
        let seq = map.slot_seq(&self.layout, slot);
        let mut backoff = Backoff::new();
        let mut waited_since: Option<Instant> = None;
        let mut last_check: Option<Instant> = None;
        let outcome: Result<bool, RingError> = loop {
            let s = seq.load(Ordering::Acquire);
            if s == pos + 1 {
                break Ok(true);
            }
            if s != pos {
                self.check_owner()?;
                break Err(RingError::corrupt(format!(
                    "slot {slot} has sequence number {s} while the consumer expected {pos} or {}; \
                     another process is reading or writing this ring",
                    pos + 1
                )));
            }
            match self.map.load_state() {
                Some(RingState::Running) => {}
                // Publishing happens before the final state (Release/Acquire): look once more.
                Some(RingState::EndOfData) => {
                    break Ok(seq.load(Ordering::Acquire) == pos + 1);
                }
                Some(RingState::Aborted) => {
                    if seq.load(Ordering::Acquire) == pos + 1 {
                        break Ok(true);
                    }
                    break Err(RingError::ProducerAborted);
                }
                Some(RingState::Initialising) | None => {
                    break Err(RingError::corrupt(format!(
                        "the ring state changed to {} after it was running",
                        self.map.state().load(Ordering::Relaxed)
                    )))
                }
            }
            if stop.load(Ordering::Relaxed) {
                break Err(RingError::Interrupted);
            }
            let now = Instant::now();
            let check_due = match last_check {
                None => true,
                Some(t) => now.duration_since(t) >= LIVENESS_CHECK_INTERVAL,
            };
            if check_due {
                last_check = Some(now);
                if let Err(e) = self
                    .check_owner()
                    .and_then(|()| self.check_producer_or_wait())
                {
                    break Err(e);
                }
            }
            waited_since.get_or_insert(now);
            backoff.snooze();
        };
        if let Some(t) = waited_since {
            self.map
                .stats()
                .add(stat::CONSUMER_WAIT_NS, t.elapsed().as_nanos() as u64);
        }
        if !outcome? {
            return Ok(None);
        }
        if self.restart.waiting.is_some() {
            // A new producer published before the next liveness check saw it.
            self.producer_back();
        }
        let slot_off = self.map.slot_offset(&self.layout, slot);
        // SAFETY: meta fields lie inside the slot at aligned offsets; the Acquire load of
        // seq == pos + 1 makes the producer's writes visible, and the producer does not
        // touch the slot again until we release it. Volatile: never assume the values.
        let (epoch, step, count, checksum) = unsafe {
            let p = self.map.base().add(slot_off);
            (
                std::ptr::read_volatile(p.add(offset::SLOT_EPOCH) as *const u64),
                std::ptr::read_volatile(p.add(offset::SLOT_STEP) as *const u64),
                std::ptr::read_volatile(p.add(offset::SLOT_COUNT) as *const u32),
                std::ptr::read_volatile(p.add(offset::SLOT_CHECKSUM) as *const u64),
            )
        };
        if count > self.info.geometry.batch_size {
            return Err(RingError::corrupt(format!(
                "batch at position {pos} claims {count} samples but batch_size is {}",
                self.info.geometry.batch_size
            )));
        }
        Ok(Some(Batch {
            map: &self.map,
            layout: self.layout,
            slots,
            slot_off,
            pos: &mut self.pos,
            kept: &mut self.kept,
            epoch,
            step,
            count: count as usize,
            checksum,
        }))
    }

    /// Whether a batch kept with [`Batch::keep`] still holds its slot.
    pub fn holds_kept(&self) -> bool {
        self.kept
    }

    /// Gives the slot of a batch kept with [`Batch::keep`] back to the producer (nothing if
    /// none is kept). [`Consumer::next`] does this too.
    pub fn release_kept(&mut self) {
        if std::mem::take(&mut self.kept) {
            let slots = self.info.geometry.slots as u64;
            let slot_off = self
                .map
                .slot_offset(&self.layout, (self.pos % slots) as usize);
            release_slot(&self.map, slot_off, slots, &mut self.pos);
        }
    }

    /// Keeps the ring's memory mapped for as long as the returned guard lives, even after the
    /// consumer is dropped (which unregisters it): for callers that lent a slot's memory to
    /// code that may outlive the consumer, such as the Python package's zero-copy arrays.
    pub fn mapping_guard(&self) -> MappingGuard {
        MappingGuard(Arc::clone(&self.map))
    }

    /// Err if another consumer has taken the ring over.
    fn check_owner(&self) -> Result<(), RingError> {
        let cur = self
            .map
            .u32_at(offset::CONSUMER_PID)
            .load(Ordering::Acquire);
        if cur != self.pid {
            return Err(RingError::ConsumerInUse { pid: cur });
        }
        Ok(())
    }

    /// Like [`Consumer::check_producer`], but with a restart wait set, a dead producer starts
    /// (or continues) the wait instead, failing only once the wait is over.
    fn check_producer_or_wait(&mut self) -> Result<(), RingError> {
        let pid = match self.check_producer() {
            Ok(()) => {
                if self.restart.waiting.is_some() {
                    self.producer_back();
                }
                return Ok(());
            }
            Err(RingError::ProducerDied { pid }) if !self.restart.wait.is_zero() => pid,
            Err(e) => return Err(e),
        };
        let (since, dead_pid) = match self.restart.waiting {
            Some(w) => w,
            None => {
                let w = (Instant::now(), pid);
                self.restart.waiting = Some(w);
                let wait = self.restart.wait;
                self.restart.emit(ProducerEvent::Died { pid, wait });
                w
            }
        };
        let waited = since.elapsed();
        if waited > self.restart.wait {
            return Err(RingError::NoNewProducer {
                pid: dead_pid,
                waited,
            });
        }
        Ok(())
    }

    /// Ends a restart wait: reports the producer that is back.
    fn producer_back(&mut self) {
        if let Some((since, _)) = self.restart.waiting.take() {
            let pid = SideRecord::read(&self.map, Side::Producer).pid;
            let event = ProducerEvent::Back {
                pid,
                waited: since.elapsed(),
                position: self.pos,
            };
            self.restart.emit(event);
        }
    }

    /// Err(ProducerDied) if the producer's pid is gone or its heartbeat is stale.
    fn check_producer(&self) -> Result<(), RingError> {
        let producer = SideRecord::read(&self.map, Side::Producer);
        if producer.dead(self.stale_after) {
            return Err(RingError::ProducerDied { pid: producer.pid });
        }
        Ok(())
    }
}

impl Drop for Consumer {
    /// Stops the heartbeat and unregisters (if still the registered consumer).
    fn drop(&mut self) {
        drop(self.heartbeat.take());
        if self.registered {
            let cpid = self.map.u32_at(offset::CONSUMER_PID);
            if cpid
                .compare_exchange(self.pid, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.map
                    .u64_at(offset::CONSUMER_HEARTBEAT)
                    .store(0, Ordering::Release);
                self.map
                    .u64_at(offset::CONSUMER_RESTART_WAIT)
                    .store(0, Ordering::Release);
            }
        }
    }
}

/// Keeps a ring's memory mapped ([`Consumer::mapping_guard`]); it holds no slot and no
/// registration, only the mapping.
pub struct MappingGuard(#[allow(dead_code)] Arc<Mapping>);

/// A published batch. The slot goes back to the producer when the `Batch` is dropped (or
/// [`Batch::release`]d); until then the producer cannot overwrite it.
pub struct Batch<'a> {
    map: &'a Mapping,
    layout: SlotLayout,
    slots: u64,
    slot_off: usize,
    pos: &'a mut u64,
    kept: &'a mut bool,
    epoch: u64,
    step: u64,
    count: usize,
    checksum: u64,
}

impl fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("position", &*self.pos)
            .field("epoch", &self.epoch)
            .field("step", &self.step)
            .field("count", &self.count)
            .field("checksum", &self.checksum)
            .finish()
    }
}

impl Batch<'_> {
    fn ptr(&self, off: usize) -> *const u8 {
        // SAFETY: slot_off leaves a whole slot in bounds (Mapping::slot_offset); off < slot_bytes.
        unsafe { self.map.base().add(self.slot_off + off) }
    }

    /// Ring position of this batch (0, 1, 2, ...).
    pub fn position(&self) -> u64 {
        *self.pos
    }

    /// Epoch, as set by the producer.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Step, as set by the producer.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Valid samples in this batch (<= batch_size).
    pub fn count(&self) -> usize {
        self.count
    }

    /// Labels of the valid samples (`count` long).
    pub fn labels(&self) -> &[u32] {
        // SAFETY: in-slot, 4-aligned, count <= batch_size; the producer does not write the
        // slot until we release it.
        unsafe {
            std::slice::from_raw_parts(self.ptr(self.layout.labels) as *const u32, self.count)
        }
    }

    /// Dataset indices of the valid samples (`count` long).
    pub fn indices(&self) -> &[u64] {
        // SAFETY: as for labels; 8-aligned.
        unsafe {
            std::slice::from_raw_parts(self.ptr(self.layout.indices) as *const u64, self.count)
        }
    }

    /// View `v`'s pixels (the recipe's order, group 0's views first): the full
    /// `batch_size * sample_bytes` of its group, `u8` NCHW. Panics past the last view.
    pub fn view(&self, v: usize) -> &[u8] {
        let (at, len) = self.layout.view(v).expect("a view of the ring");
        // SAFETY: as for labels (the layout comes from the validated geometry).
        unsafe { std::slice::from_raw_parts(self.ptr(at), len) }
    }

    /// Group `g`'s pixels, all its views: `u8[views][batch_size][C][H][W]`. Panics past the last
    /// group.
    pub fn group(&self, g: usize) -> &[u8] {
        let l = self.layout.groups()[g];
        // SAFETY: as for labels.
        unsafe { std::slice::from_raw_parts(self.ptr(l.offset), l.views * l.view_bytes) }
    }

    /// The producer's checksum (0 = none).
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// Gives the slot back to the producer (same as dropping the batch).
    pub fn release(self) {}

    /// Ends the borrow of the consumer but keeps the slot: the producer cannot overwrite it
    /// until [`Consumer::release_kept`] or the next [`Consumer::next`]. The slices taken from
    /// this batch stay valid (as raw memory) that long, for callers that hand them to code the
    /// borrow checker cannot follow (the Python package's zero-copy arrays).
    pub fn keep(self) {
        *self.kept = true;
        std::mem::forget(self);
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        release_slot(self.map, self.slot_off, self.slots, self.pos);
    }
}

/// Gives the slot at ring position `*pos` back to the producer and moves `*pos` on.
fn release_slot(map: &Mapping, slot_off: usize, slots: u64, pos: &mut u64) {
    let p = *pos;
    map.u64_at(slot_off + offset::SLOT_SEQ)
        .store(p + slots, Ordering::Release);
    map.u64_at(offset::READ_POS).store(p + 1, Ordering::Release);
    *pos = p + 1;
}
