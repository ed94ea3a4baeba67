//! [`Producer`]: creates a ring and publishes batches into it.

use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::addr_of_mut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::layout::{
    offset, Header, RingInfo, RingState, SlotLayout, FORMAT_VERSION, HEADER_BYTES,
    PIXEL_LAYOUT_U8_NCHW,
};
use crate::liveness::{
    now_ms, peer_dead, pid_namespace, Heartbeat, Side, SideRecord, DEFAULT_STALE_AFTER,
};
use crate::map::{Backoff, Mapping, MAGIC_WORD};
use crate::stats::{stat, Stats};
use crate::RingError;

/// The writing side of a ring. Owns the ring file: creates it, keeps a heartbeat, and
/// removes it on drop. Exactly one per ring.
pub struct Producer {
    path: PathBuf,
    info: RingInfo,
    layout: SlotLayout,
    map: Arc<Mapping>,
    /// (st_dev, st_ino) of the file we created, so we never remove someone else's.
    file_id: (u64, u64),
    pos: u64,
    /// This process's pid, as stored in the header's `producer_pid` while the ring is ours.
    pid: u32,
    finished: bool,
    removed: bool,
    heartbeat: Option<Heartbeat>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("path", &self.path)
            .field("geometry", &self.info.geometry)
            .field("position", &self.pos)
            .field("finished", &self.finished)
            .finish()
    }
}

/// If a ring file at `path` has a live producer, its pid.
fn live_owner(path: &Path) -> Result<Option<u32>, RingError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RingError::io(
                path,
                "a file exists at the ring path but cannot be read",
                e,
            ))
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| RingError::io(path, "could not stat the file at the ring path", e))?;
    // Neither replace nor take over a file that another user put there (or may write).
    if meta.is_file() {
        crate::ownership::check(path, &meta)?;
    }
    let mut buf = [0u8; 256];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A directory or something else unreadable: let the removal report it.
            Err(_) => return Ok(None),
        }
    }
    if n == 0 {
        return Ok(None); // an empty file: nothing to protect
    }
    // Never delete a file that is not a ring: a mistyped `--shm /absolute/path` must not cost
    // the user a file. Zero magic: a producer may still be initialising it (pid written first).
    let is_ring_start = buf[..n.min(8)].iter().all(|&b| b == 0)
        || buf[..n.min(8)] == MAGIC_WORD.to_le_bytes()[..n.min(8)];
    if !is_ring_start {
        return Err(RingError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    if n < offset::PRODUCER_PIDNS + 8 {
        return Ok(None);
    }
    let u32_at = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap());
    let pid = u32_at(offset::PRODUCER_PID);
    let dead = peer_dead(
        pid,
        u64_at(offset::PRODUCER_PIDNS),
        u64_at(offset::PRODUCER_HEARTBEAT),
        DEFAULT_STALE_AFTER,
    );
    Ok((!dead).then_some(pid))
}

/// Free bytes on the filesystem holding `file`, if known.
fn free_bytes(file: &File) -> Option<u64> {
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs fills the struct on success; we only read it then.
    let r = unsafe { libc::fstatvfs(file.as_raw_fd(), s.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    let s = unsafe { s.assume_init() };
    #[allow(clippy::unnecessary_cast)] // field types differ between platforms
    Some((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

/// Reserves `len` bytes for `file` so a full filesystem fails now, not with SIGBUS later.
fn reserve(file: &File, path: &Path, len: u64) -> Result<(), RingError> {
    loop {
        // SAFETY: plain syscall wrapper on an open fd.
        let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
        match r {
            0 => return Ok(()),
            libc::EINTR => continue,
            libc::ENOSPC => {
                return Err(RingError::NoSpace {
                    path: path.to_path_buf(),
                    needed: len,
                    available: free_bytes(file),
                })
            }
            e => {
                return Err(RingError::io(
                    path,
                    format!("could not reserve {len} bytes for the ring file"),
                    std::io::Error::from_raw_os_error(e),
                ))
            }
        }
    }
}

impl Producer {
    /// Creates (mode 0600, `O_EXCL`) and maps the ring at `path`, reserving the whole file
    /// up front with `posix_fallocate`, so a full `/dev/shm` fails here with
    /// [`RingError::NoSpace`] instead of a SIGBUS later.
    ///
    /// If a file already exists at `path`: when it is a ring whose producer is alive (pid
    /// exists, heartbeat younger than 3 s) this fails with [`RingError::InUse`]; a stale ring
    /// (dead producer) or an empty file is removed and replaced; any other file is left alone
    /// and refused with [`RingError::BadMagic`]. Starts a
    /// heartbeat thread (every ~200 ms) that stops on drop.
    pub fn create(path: &Path, info: &RingInfo) -> Result<Producer, RingError> {
        info.validate()?;
        let layout = info.geometry.slot_layout();
        let file_bytes = info.geometry.file_bytes();
        let mut attempts = 0;
        let file = loop {
            if let Some(pid) = live_owner(path)? {
                return Err(RingError::InUse {
                    pid,
                    path: path.to_path_buf(),
                });
            }
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(RingError::io(
                        path,
                        "could not remove the stale file at the ring path",
                        e,
                    ))
                }
            }
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(f) => break f,
                // Someone created it between our removal and our create: look again.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 3 => {
                    attempts += 1
                }
                Err(e) => return Err(RingError::io(path, "could not create the ring file", e)),
            }
        };
        let fail = |e: RingError| {
            let _ = fs::remove_file(path);
            e
        };
        // umask can only clear bits, but be explicit.
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(|e| {
                fail(RingError::io(
                    path,
                    "could not set the ring file's mode to 0600",
                    e,
                ))
            })?;
        // Claim the file before the (possibly slow) reservation, so a concurrent create
        // sees a live producer rather than junk.
        let pid = std::process::id();
        let started = now_ms();
        let mut claim = [0u8; offset::PRODUCER_PIDNS + 8];
        claim[offset::PRODUCER_PID..][..4].copy_from_slice(&pid.to_le_bytes());
        claim[offset::PRODUCER_HEARTBEAT..][..8].copy_from_slice(&started.to_le_bytes());
        claim[offset::PRODUCER_PIDNS..][..8].copy_from_slice(&pid_namespace().to_le_bytes());
        file.write_all_at(&claim, 0)
            .map_err(|e| fail(RingError::io(path, "could not write the ring header", e)))?;
        reserve(&file, path, file_bytes as u64).map_err(fail)?;
        let meta = file
            .metadata()
            .map_err(|e| fail(RingError::io(path, "could not stat the ring file", e)))?;
        if meta.len() != file_bytes as u64 {
            return Err(fail(RingError::corrupt(format!(
                "the new ring file is {} bytes after reserving {file_bytes}",
                meta.len()
            ))));
        }
        let map = Mapping::map(&file, file_bytes, true)
            .map_err(|e| fail(RingError::io(path, "could not map the ring file", e)))?;
        drop(file);

        let g = info.geometry;
        let h = map.base() as *mut Header;
        // SAFETY: the mapping is at least HEADER_BYTES long and page-aligned; no reader
        // trusts these plain fields before `magic` and `state` are published below, and no
        // reference to them exists in this process. Raw-pointer writes create no references.
        unsafe {
            addr_of_mut!((*h).header_bytes).write(HEADER_BYTES as u32);
            addr_of_mut!((*h).slots).write(g.slots);
            addr_of_mut!((*h).batch_size).write(g.batch_size);
            addr_of_mut!((*h).views).write(g.views() as u32);
            addr_of_mut!((*h).channels).write(g.channels);
            addr_of_mut!((*h).height).write(g.groups[0].height);
            addr_of_mut!((*h).width).write(g.groups[0].width);
            addr_of_mut!((*h).group_count).write(g.groups.len() as u32);
            let mut groups = [[0u32; 4]; crate::MAX_GROUPS];
            for (raw, group) in groups.iter_mut().zip(g.groups.iter()) {
                *raw = [group.views, group.height, group.width, 0];
            }
            addr_of_mut!((*h).groups).write(groups);
            let mut recipe = [0u8; crate::layout::RECIPE_NAME_BYTES];
            recipe[..info.recipe.len()].copy_from_slice(info.recipe.as_bytes());
            addr_of_mut!((*h).recipe).write(recipe);
            addr_of_mut!((*h).pixel_layout).write(PIXEL_LAYOUT_U8_NCHW);
            addr_of_mut!((*h).slot_bytes).write(layout.slot_bytes as u64);
            addr_of_mut!((*h).file_bytes).write(file_bytes as u64);
            addr_of_mut!((*h).mean).write(info.mean);
            addr_of_mut!((*h).std).write(info.std);
            addr_of_mut!((*h).dataset_len).write(info.dataset_len);
            addr_of_mut!((*h).steps_per_epoch).write(info.steps_per_epoch);
            addr_of_mut!((*h).seed).write(info.seed);
            addr_of_mut!((*h).total_steps).write(info.total_steps);
            addr_of_mut!((*h).first_step).write(info.first_step);
            addr_of_mut!((*h).rank).write(info.rank);
            addr_of_mut!((*h).world_size).write(info.world_size);
            addr_of_mut!((*h).stream_key).write(info.stream_key);
            addr_of_mut!((*h).version).write(FORMAT_VERSION);
        }
        map.u64_at(offset::PRODUCER_START)
            .store(started, Ordering::Relaxed);
        map.u64_at(offset::PRODUCER_HEARTBEAT)
            .store(now_ms(), Ordering::Relaxed);
        for i in 0..g.slots as usize {
            map.slot_seq(&layout, i).store(i as u64, Ordering::Relaxed);
        }
        // Publish: magic, then state, both Release so everything above is visible first.
        map.u64_at(offset::MAGIC)
            .store(MAGIC_WORD, Ordering::Release);
        map.state()
            .store(RingState::Running.as_u32(), Ordering::Release);

        Producer::start(path, info.clone(), map, (meta.dev(), meta.ino()), 0)
    }

    /// Starts producing into an initialised, claimed mapping at ring position `pos`: spawns the
    /// heartbeat thread. On failure the ring is aborted and removed (as on drop).
    pub(crate) fn start(
        path: &Path,
        info: RingInfo,
        map: Mapping,
        file_id: (u64, u64),
        pos: u64,
    ) -> Result<Producer, RingError> {
        let map = Arc::new(map);
        let heartbeat = Heartbeat::spawn(
            "ring-producer-heartbeat",
            Arc::clone(&map),
            offset::PRODUCER_HEARTBEAT,
        );
        let mut producer = Producer {
            path: path.to_path_buf(),
            layout: info.geometry.slot_layout(),
            info,
            map,
            file_id,
            pos,
            pid: std::process::id(),
            finished: false,
            removed: false,
            heartbeat: None,
        };
        match heartbeat {
            Ok(hb) => producer.heartbeat = Some(hb),
            // Dropping `producer` aborts and removes the ring.
            Err(e) => {
                return Err(RingError::io(
                    path,
                    "could not start the producer heartbeat thread",
                    e,
                ))
            }
        }
        Ok(producer)
    }

    /// The ring file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What this ring was created with.
    pub fn info(&self) -> &RingInfo {
        &self.info
    }

    /// The ring position the next [`Producer::acquire`] fills (= batches published so far).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The stream position (global step) the next [`Producer::acquire`] fills: the ring's
    /// `first_step` plus [`Producer::position`].
    pub fn next_step(&self) -> u64 {
        self.info.first_step + self.pos
    }

    /// Current ring state.
    pub fn state(&self) -> RingState {
        self.map.load_state().unwrap_or(RingState::Aborted)
    }

    /// Waits for the next free slot: a brief spin, then sleeps backing off up to ~2 ms
    /// (no core is burnt while the ring is full). Adds the time waited to
    /// [`stat::PRODUCER_WAIT_NS`]. Returns [`RingError::Interrupted`] as soon as `stop` is
    /// true (also if it already is), and [`RingError::Corrupt`] if the slot's sequence number
    /// is impossible (something else writes the ring).
    ///
    /// Returns [`RingError::ProducerReplaced`] if another producer took the ring over (this one
    /// was presumed dead): from then on this producer must not touch the ring.
    pub fn acquire(&mut self, stop: &AtomicBool) -> Result<SlotMut<'_>, RingError> {
        self.check_still_producer()?;
        let slots = self.info.geometry.slots as u64;
        let pos = self.pos;
        let slot = (pos % slots) as usize;
        let seq = self.map.slot_seq(&self.layout, slot);
        let mut backoff = Backoff::new();
        let mut waited_since: Option<Instant> = None;
        let outcome = loop {
            if stop.load(Ordering::Relaxed) {
                break Err(RingError::Interrupted);
            }
            let s = seq.load(Ordering::Acquire);
            if s == pos {
                break Ok(());
            }
            // Legitimate while full: the slot still holds position pos - slots, unread.
            if !(pos >= slots && s == pos - slots + 1) {
                break Err(RingError::corrupt(format!(
                    "slot {slot} has sequence number {s} while the producer expected {pos}; \
                     another process is writing this ring"
                )));
            }
            waited_since.get_or_insert_with(Instant::now);
            backoff.snooze();
        };
        if let Some(t) = waited_since {
            self.map
                .stats()
                .add(stat::PRODUCER_WAIT_NS, t.elapsed().as_nanos() as u64);
        }
        outcome?;
        let slot_off = self.map.slot_offset(&self.layout, slot);
        let mut slot = SlotMut {
            map: &self.map,
            layout: self.layout,
            batch: self.info.geometry.batch_size as usize,
            slots,
            slot_off,
            pos: &mut self.pos,
        };
        slot.set_meta(0, pos, slot.batch as u32);
        slot.set_checksum(0);
        Ok(slot)
    }

    /// Err([`RingError::ProducerReplaced`]) if the header names another producer than us.
    fn check_still_producer(&self) -> Result<(), RingError> {
        match self.current_producer() {
            pid if pid == self.pid => Ok(()),
            pid => Err(RingError::ProducerReplaced { pid }),
        }
    }

    fn current_producer(&self) -> u32 {
        self.map
            .u32_at(offset::PRODUCER_PID)
            .load(Ordering::Acquire)
    }

    /// True when a consumer is attached and alive (pid alive and heartbeat fresh).
    pub fn consumer_alive(&self) -> bool {
        !SideRecord::read(&self.map, Side::Consumer).dead(DEFAULT_STALE_AFTER)
    }

    /// How long the attached, live consumer says it will wait for a new producer if this one
    /// stops (`None`: no live consumer, or one that will not wait).
    pub fn consumer_restart_wait(&self) -> Option<Duration> {
        let ms = self
            .map
            .u64_at(offset::CONSUMER_RESTART_WAIT)
            .load(Ordering::Acquire);
        (ms > 0 && self.consumer_alive()).then(|| Duration::from_millis(ms))
    }

    /// Stops producing without ending the stream: the ring file stays, its state unchanged and
    /// every published batch in it, so that a new producer can take it over
    /// ([`Producer::open`]) while the consumer waits (see [`Producer::consumer_restart_wait`]).
    /// The heartbeat stops; the consumer sees this producer dead once its process exits.
    pub fn hand_over(mut self) {
        self.finished = true;
        self.removed = true;
    }

    /// Batches published so far (header `write_pos`).
    pub fn written(&self) -> u64 {
        self.map.u64_at(offset::WRITE_POS).load(Ordering::Acquire)
    }

    /// Batches consumed so far (header `read_pos`).
    pub fn consumed(&self) -> u64 {
        self.map.u64_at(offset::READ_POS).load(Ordering::Acquire)
    }

    /// Blocks until the consumer has taken every published batch (true), or `stop` is set
    /// or `timeout` passes (false). Sleeps while waiting.
    pub fn wait_drained(&self, stop: &AtomicBool, timeout: Duration) -> bool {
        let start = Instant::now();
        let mut backoff = Backoff::new();
        loop {
            if self.consumed() >= self.written() {
                return true;
            }
            if stop.load(Ordering::Relaxed) || start.elapsed() >= timeout {
                return false;
            }
            backoff.snooze();
        }
    }

    /// Marks the end of data: the consumer gets `Ok(None)` after reading everything
    /// published. No effect if the ring was already aborted.
    pub fn finish(&mut self) {
        self.set_final_state(RingState::EndOfData);
    }

    /// Marks the ring aborted: the consumer gets `Err(ProducerAborted)` after reading
    /// everything published. No effect if the ring was already finished.
    pub fn abort(&mut self) {
        self.set_final_state(RingState::Aborted);
    }

    fn set_final_state(&mut self, to: RingState) {
        let _ = self.map.state().compare_exchange(
            RingState::Running.as_u32(),
            to.as_u32(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.finished = true;
    }

    /// Removes the ring file now (idempotent). Whoever has it mapped keeps a valid mapping,
    /// but no new consumer can attach. A file at the path that is not the one this producer
    /// created (it was replaced) is left alone.
    pub fn remove(&mut self) -> Result<(), RingError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        match fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.file_id => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(RingError::io(
                    &self.path,
                    "could not stat the ring file to remove it",
                    e,
                ))
            }
        }
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RingError::io(
                &self.path,
                "could not remove the ring file",
                e,
            )),
        }
    }

    /// The ring's live statistics block.
    pub fn stats(&self) -> &Stats {
        self.map.stats()
    }
}

impl Drop for Producer {
    /// Aborts the ring unless [`Producer::finish`] or [`Producer::abort`] was called, removes
    /// the file, and stops the heartbeat thread.
    fn drop(&mut self) {
        // A producer that was replaced leaves the ring to its successor untouched.
        if self.check_still_producer().is_ok() {
            if !self.finished {
                self.abort();
            }
            let _ = self.remove();
        }
        drop(self.heartbeat.take());
    }
}

/// One slot being filled. Nothing is visible to the consumer until [`SlotMut::publish`];
/// dropping it unpublished leaves the slot free (the next `acquire` returns it again).
///
/// Metadata starts as epoch 0, step = ring position, count = batch_size, checksum 0;
/// payload bytes are whatever the slot held before.
pub struct SlotMut<'a> {
    map: &'a Mapping,
    layout: SlotLayout,
    batch: usize,
    slots: u64,
    slot_off: usize,
    pos: &'a mut u64,
}

/// Disjoint mutable views of a slot's payload.
pub struct SlotParts<'a> {
    /// `batch_size` labels.
    pub labels: &'a mut [u32],
    /// `batch_size` dataset indices.
    pub indices: &'a mut [u64],
    /// Every view's pixels, group after group ([`SlotLayout::pixels`]); view `v` is
    /// [`SlotParts::view`].
    pub pixels: &'a mut [u8],
    /// Where the slot's parts lie (offsets from the slot start; `pixels` starts at
    /// `layout.pixels().start`).
    pub layout: SlotLayout,
}

impl SlotParts<'_> {
    /// View `v`'s pixels for the whole batch, `u8[B][C][H][W]` (panics past the last view).
    pub fn view(&mut self, v: usize) -> &mut [u8] {
        let (at, len) = self.layout.view(v).expect("a view of the ring");
        let start = at - self.layout.pixels().start;
        &mut self.pixels[start..start + len]
    }
}

impl fmt::Debug for SlotMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotMut")
            .field("position", &*self.pos)
            .finish()
    }
}

impl<'a> SlotMut<'a> {
    fn ptr(&self, off: usize) -> *mut u8 {
        // SAFETY: slot_off was checked by Mapping::slot_offset to leave slot_bytes in
        // bounds, and every `off` used here is < slot_bytes.
        unsafe { self.map.base().add(self.slot_off + off) }
    }

    /// The ring position (0, 1, 2, ...) this slot will publish.
    pub fn position(&self) -> u64 {
        *self.pos
    }

    /// The ring's statistics block (usable while the slot is held, unlike `Producer::stats`).
    pub fn stats(&self) -> &'a Stats {
        self.map.stats()
    }

    /// Sets the batch metadata. `count` is the number of valid samples; panics if it
    /// exceeds `batch_size`.
    pub fn set_meta(&mut self, epoch: u64, step: u64, count: u32) {
        assert!(
            count as usize <= self.batch,
            "batch count {count} exceeds batch_size {}",
            self.batch
        );
        // SAFETY: meta fields lie inside this slot at aligned offsets; the consumer does not
        // read them until publish (seq protocol), and we hold the slot exclusively.
        unsafe {
            (self.ptr(offset::SLOT_EPOCH) as *mut u64).write(epoch);
            (self.ptr(offset::SLOT_STEP) as *mut u64).write(step);
            (self.ptr(offset::SLOT_COUNT) as *mut u32).write(count);
        }
    }

    /// Sets the optional payload checksum (0 = none).
    pub fn set_checksum(&mut self, c: u64) {
        // SAFETY: as in set_meta.
        unsafe { (self.ptr(offset::SLOT_CHECKSUM) as *mut u64).write(c) }
    }

    /// Labels, dataset indices (both `batch_size` long) and the views' pixels, as disjoint
    /// mutable slices.
    pub fn parts_mut(&mut self) -> SlotParts<'_> {
        let b = self.batch;
        let l = self.layout;
        // SAFETY: the three regions are disjoint, lie inside this slot (layout from the
        // validated geometry), and are suitably aligned (slot page-aligned, labels at 64,
        // indices at a multiple of 64). The consumer does not touch them before publish,
        // and the borrow of `self` keeps them unique in this process.
        unsafe {
            SlotParts {
                labels: std::slice::from_raw_parts_mut(self.ptr(l.labels) as *mut u32, b),
                indices: std::slice::from_raw_parts_mut(self.ptr(l.indices) as *mut u64, b),
                pixels: std::slice::from_raw_parts_mut(
                    self.ptr(l.pixels().start),
                    l.pixels().len(),
                ),
                layout: l,
            }
        }
    }

    /// Makes the batch visible to the consumer (Release store of the slot's sequence
    /// number, then `write_pos`).
    pub fn publish(self) {
        let pos = *self.pos;
        self.map
            .u64_at(self.slot_off + offset::SLOT_SEQ)
            .store(pos + 1, Ordering::Release);
        self.map
            .u64_at(offset::WRITE_POS)
            .store(pos + 1, Ordering::Release);
        debug_assert!(self.slots > 0);
        *self.pos = pos + 1;
    }
}
