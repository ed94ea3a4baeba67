//! The ring's on-memory format: header, slots, geometry.
//!
//! # Ring file format, version 3
//!
//! A ring is one regular file (normally `/dev/shm/<name>`, mode 0600) that both processes map
//! `MAP_SHARED`. All integers are little-endian (the crate refuses to build on big-endian
//! targets); every offset below is in bytes from the start of the file. The file is exactly
//! `file_bytes = 4096 + slots * slot_bytes` long and is fully reserved (`posix_fallocate`)
//! when created.
//!
//! ## Header (bytes 0..4096, [`Header`], `#[repr(C)]`)
//!
//! | offset | type          | field                   | notes |
//! |-------:|---------------|-------------------------|-------|
//! |      0 | `[u8; 8]`     | `magic`                 | `b"BARLOWRG"` ([`MAGIC`]); written as one 8-byte store |
//! |      8 | `u32`         | `version`               | [`FORMAT_VERSION`] = 3 |
//! |     12 | `u32`         | `header_bytes`          | 4096 |
//! |     16 | `u32`         | `slots`                 | 1..=1024 |
//! |     20 | `u32`         | `batch_size`            | 1..=65536 |
//! |     24 | `u32`         | `views`                 | views per sample, all groups: 1..=64 |
//! |     28 | `u32`         | `channels`              | 1..=4 |
//! |     32 | `u32`         | `height`                | group 0's height, 1..=8192 |
//! |     36 | `u32`         | `width`                 | group 0's width, 1..=8192 |
//! |     40 | `u32`         | `pixel_layout`          | 1 = `u8`, NCHW per view, views in order ([`PIXEL_LAYOUT_U8_NCHW`]) |
//! |     44 | `u32`         | (padding)               | 0 |
//! |     48 | `u64`         | `slot_bytes`            | must equal [`Geometry::slot_bytes`] |
//! |     56 | `u64`         | `file_bytes`            | must equal [`Geometry::file_bytes`] and the file size |
//! |     64 | `[f32; 3]`    | `mean`                  | per-channel normalisation mean (for the consumer) |
//! |     76 | `[f32; 3]`    | `std`                   | per-channel normalisation std (finite, > 0) |
//! |     88 | `u64`         | `dataset_len`           | samples per epoch (after skipping) |
//! |     96 | `u64`         | `steps_per_epoch`       | |
//! |    104 | `u64`         | `seed`                  | |
//! |    112 | `u64`         | `total_steps`           | planned batches, 0 = unknown / unbounded |
//! |    120 | `AtomicU32`   | `state`                 | [`RingState`]: 0 Initialising, 1 Running, 2 EndOfData, 3 Aborted |
//! |    124 | `AtomicU32`   | `producer_pid`          | |
//! |    128 | `AtomicU32`   | `consumer_pid`          | 0 = no consumer attached |
//! |    132 | `u32`         | (padding)               | 0 |
//! |    136 | `AtomicU64`   | `producer_heartbeat_ms` | ms since the UNIX epoch, refreshed every ~200 ms |
//! |    144 | `AtomicU64`   | `consumer_heartbeat_ms` | ms since the UNIX epoch, refreshed every ~200 ms |
//! |    152 | `AtomicU64`   | `producer_start_ms`     | when the producer created the ring |
//! |    160 | `AtomicU64`   | `write_pos`             | batches published so far |
//! |    168 | `AtomicU64`   | `read_pos`              | batches consumed (released) so far = next position to read; a reader refuses one above [`MAX_POSITION`] |
//! |    176 | `AtomicU64`   | `producer_pidns`        | inode of the producer's `/proc/self/ns/pid` (0 = unknown) |
//! |    184 | `AtomicU64`   | `consumer_pidns`        | inode of the consumer's `/proc/self/ns/pid` (0 = unknown) |
//! |    192 | `u64`         | `first_step`            | producer-defined stream position (global step) of ring position 0 |
//! |    200 | `u32`         | `rank`                  | data-parallel rank of this ring's stream (0 if unsharded) |
//! |    204 | `u32`         | `world_size`            | data-parallel world size, >= 1, > `rank` |
//! |    208 | `u64`         | `stream_key`            | producer-defined fingerprint of everything else the stream depends on (0 = none) |
//! |    216 | `AtomicU64`   | `consumer_restart_wait_ms` | how long the attached consumer waits for a new producer when this one dies (0 = it does not) |
//! |    224 | `[u64; 4]`    | (reserved)              | 0 |
//! |    256 | `[AtomicU64; 32]` | `stats`             | live counters, see [`crate::stat`] |
//! |    512 | `u32`         | `group_count`           | view groups, 1..=8 |
//! |    516 | `u32`         | (padding)               | 0 |
//! |    520 | `[[u32; 4]; 8]` | `groups`              | per group: views, height, width, 0; unused entries 0; views sum to `views` |
//! |    648 | `[u8; 32]`    | `recipe`                | the producer's name for what it makes (e.g. `dino`), UTF-8, zero-padded |
//! |    680 |               | (reserved up to 4096)   | 0 |
//!
//! Fields from `magic` to `total_steps`, `first_step` to `stream_key`, and `group_count` to
//! `recipe` are written once by the producer while `state` is
//! Initialising and never change afterwards; the producer then stores `state = Running` with
//! `Release`, and readers load `state` with `Acquire` before trusting them. Readers copy and
//! validate those fields once, against each other and the file size, and never re-read them.
//!
//! ## Slots
//!
//! Slot `i` (0-based) starts at `4096 + i * slot_bytes`; `slot_bytes` is a multiple of 4096,
//! so every slot is page-aligned. With `B = batch_size`, `V_g` views of `S_g = channels *
//! height_g * width_g` bytes (one view of one sample) in group `g`, and `pad64(x)` = `x` rounded up
//! to a multiple of 64:
//!
//! | offset in slot                | size          | content |
//! |-------------------------------|---------------|---------|
//! | 0                             | 64            | meta ([`SlotMeta`]): `seq: AtomicU64` @0, `epoch: u64` @8, `step: u64` @16, `count: u32` @24, pad @28, `checksum: u64` @32, reserved @40..64 |
//! | 64                            | `pad64(4B)`   | labels, `u32[B]` |
//! | `64 + pad64(4B)`              | `pad64(8B)`   | dataset indices, `u64[B]` |
//! | `group_0` (after the indices) | `pad64(V_0*B*S_0)` | group 0's pixels, `u8[V_0][B][C][H_0][W_0]` |
//! | `group_g = group_(g-1) + pad64(V_(g-1)*B*S_(g-1))` | `V_g*B*S_g` | group `g`'s pixels |
//! | ...                           |               | zero padding up to `slot_bytes` (next multiple of 4096) |
//!
//! View `v` of the recipe is the `v`-th in this order (group 0's views first). `count` (<= B) is
//! the number of valid samples; labels and indices beyond `count` are unspecified, the views are
//! always the full `B*S_g` bytes. `checksum` is an optional, producer-defined 64-bit value (0 =
//! none). A two-view ring (Barlow Twins) is one group of 2 views.
//!
//! ## Synchronisation (Vyukov-style per-slot sequence numbers)
//!
//! Ring positions `p = 0, 1, 2, ...` map to slot `p % slots`. Slot `i` starts with `seq = i`.
//!
//! * The producer writing position `p` waits until `seq == p` (Acquire), fills meta and payload,
//!   then stores `seq = p + 1` (Release) and `write_pos = p + 1`.
//! * The consumer reading position `p` waits until `seq == p + 1` (Acquire), reads, then
//!   stores `seq = p + slots` (Release) and `read_pos = p + 1`.
//!
//! A consumer therefore never sees a half-written batch, and a producer never overwrites an
//! unread one. While waiting, the only legitimate values are `p` or `p + 1 - slots`
//! (producer) and `p` (consumer); anything else is reported as corruption. A new consumer
//! starts at `read_pos`; if it finds that slot already released (`seq >= read_pos + slots`,
//! a consumer died between its two stores; only detectable with `slots >= 2`) it first
//! advances `read_pos` by one. A batch that was being read when its consumer died is
//! delivered again to the next consumer (at-least-once).
//!
//! ## Liveness
//!
//! Each side writes its pid, its pid-namespace id and a heartbeat every ~200 ms. A peer is
//! alive while its heartbeat is fresh (default: younger than 3 s) and, when both share a pid
//! namespace, `kill(pid, 0)` does not fail with `ESRCH` (`EPERM` counts as alive).
//!
//! ## Takeover (a new producer on a live consumer's ring)
//!
//! A ring in state Running (or EndOfData) whose producer is dead (heartbeat stale and, in a
//! shared pid namespace, pid gone) while its consumer is alive may be taken over by a new
//! producer that declares the same fixed fields (everything from `slots` to `total_steps` and
//! `rank`, `world_size`, `stream_key`; `first_step` is the ring's, not the newcomer's):
//!
//! 1. it stores a fresh `producer_heartbeat_ms`, then swaps `producer_pid` from the dead pid to
//!    its own (compare-and-swap: of two newcomers only one wins), then `producer_pidns`;
//! 2. it continues at the first unpublished position `w`: `write_pos`, plus one if slot
//!    `write_pos % slots` already holds `seq > write_pos` (the old producer died between its two
//!    publishing stores), and repairs `write_pos`;
//! 3. it fills position `w` with the batch of stream position `first_step + w`, rewriting
//!    whatever the old producer left half-written there (that slot's `seq` was never advanced,
//!    so no consumer read it), and goes on with the ordinary protocol.
//!
//! Batches published before the death and not yet read stay in the ring and are delivered
//! unchanged; with a deterministic stream they are the very batches the newcomer would make.
//! A producer checks before each slot that `producer_pid` is still its own, so an old producer
//! that was only frozen stops instead of writing beside its successor.
//!
//! ## Ownership
//!
//! Both sides refuse a ring file that is owned by another user than their effective uid, or
//! that is writable by group or others (see [`crate::ownership`]).

use std::fmt;
use std::mem::{align_of, offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::stats::{Stats, STATS_LEN};
use crate::RingError;

#[cfg(target_endian = "big")]
compile_error!("the barlow ring format is little-endian; big-endian targets are not supported");

/// First 8 bytes of every ring file.
pub const MAGIC: [u8; 8] = *b"BARLOWRG";
/// Version of the format described in this module.
/// Version 2 added `first_step`, `rank`, `world_size`, `stream_key` and
/// `consumer_restart_wait_ms` in what version 1 reserved; version 3 the view groups and the
/// recipe's name (any number of views of several sizes; version 2 had exactly two of one size).
pub const FORMAT_VERSION: u32 = 3;
/// Size of the header; slot 0 starts here.
pub const HEADER_BYTES: usize = 4096;
/// Slots are sized and placed in multiples of this.
pub const SLOT_ALIGN: usize = 4096;
/// Size of the per-slot metadata block.
pub const SLOT_META_BYTES: usize = 64;
/// `pixel_layout` value: `u8` pixels, NCHW per view.
pub const PIXEL_LAYOUT_U8_NCHW: u32 = 1;

/// Largest ring position (`write_pos`, `read_pos`) a reader accepts from a header: 2^62, which a
/// producer publishing a million batches a second reaches after 146,000 years. Anything above
/// is corruption, refused before position arithmetic could overflow.
pub const MAX_POSITION: u64 = 1 << 62;

/// Upper bounds enforced by [`Geometry::validate`].
pub const MAX_SLOTS: u32 = 1024;
/// Largest accepted batch size.
pub const MAX_BATCH: u32 = 65536;
/// Largest accepted channel count.
pub const MAX_CHANNELS: u32 = 4;
/// Largest accepted height or width.
pub const MAX_SIDE: u32 = 8192;
/// Most view groups in a ring.
pub const MAX_GROUPS: usize = 8;
/// Most views per sample, all groups together.
pub const MAX_VIEWS: u32 = 64;
/// Bytes of the header's recipe name (UTF-8, zero-padded; at most 31 used).
pub const RECIPE_NAME_BYTES: usize = 32;

/// The ring header as it lies in memory (see the module docs for the table).
///
/// Only ever accessed through raw pointers into the mapping: plain fields are written by the
/// producer before `state` leaves Initialising, atomics are shared-mutable.
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// [`HEADER_BYTES`].
    pub header_bytes: u32,
    /// Geometry: number of slots.
    pub slots: u32,
    /// Geometry: samples per batch.
    pub batch_size: u32,
    /// Views per sample (all groups).
    pub views: u32,
    /// Geometry: channels.
    pub channels: u32,
    /// Group 0's height.
    pub height: u32,
    /// Group 0's width.
    pub width: u32,
    /// [`PIXEL_LAYOUT_U8_NCHW`].
    pub pixel_layout: u32,
    /// Zero.
    pub _pad0: u32,
    /// Bytes per slot.
    pub slot_bytes: u64,
    /// Bytes of the whole file.
    pub file_bytes: u64,
    /// Normalisation mean.
    pub mean: [f32; 3],
    /// Normalisation std.
    pub std: [f32; 3],
    /// Samples per epoch.
    pub dataset_len: u64,
    /// Batches per epoch.
    pub steps_per_epoch: u64,
    /// Producer's seed.
    pub seed: u64,
    /// Planned batches (0 = unknown).
    pub total_steps: u64,
    /// [`RingState`] as u32.
    pub state: AtomicU32,
    /// Producer pid.
    pub producer_pid: AtomicU32,
    /// Consumer pid (0 = none).
    pub consumer_pid: AtomicU32,
    /// Zero.
    pub _pad1: u32,
    /// Producer heartbeat, ms since the UNIX epoch.
    pub producer_heartbeat_ms: AtomicU64,
    /// Consumer heartbeat, ms since the UNIX epoch.
    pub consumer_heartbeat_ms: AtomicU64,
    /// When the producer started, ms since the UNIX epoch.
    pub producer_start_ms: AtomicU64,
    /// Batches published.
    pub write_pos: AtomicU64,
    /// Batches consumed.
    pub read_pos: AtomicU64,
    /// Producer's pid namespace id (0 = unknown).
    pub producer_pidns: AtomicU64,
    /// Consumer's pid namespace id (0 = unknown).
    pub consumer_pidns: AtomicU64,
    /// Stream position (global step) of ring position 0.
    pub first_step: u64,
    /// Data-parallel rank of the stream.
    pub rank: u32,
    /// Data-parallel world size of the stream.
    pub world_size: u32,
    /// Producer-defined fingerprint of the rest of the stream's definition (0 = none).
    pub stream_key: u64,
    /// How long the attached consumer waits for a new producer, in ms (0 = it does not).
    pub consumer_restart_wait_ms: AtomicU64,
    /// Zero.
    pub _reserved: [u64; 4],
    /// Live statistics.
    pub stats: Stats,
    /// Number of view groups.
    pub group_count: u32,
    /// Zero.
    pub _pad2: u32,
    /// Per group: views, height, width, 0.
    pub groups: [[u32; 4]; MAX_GROUPS],
    /// The producer's name for its recipe, zero-padded UTF-8.
    pub recipe: [u8; RECIPE_NAME_BYTES],
}

/// Per-slot metadata, the first 64 bytes of every slot.
#[repr(C)]
pub struct SlotMeta {
    /// Sequence number (see the synchronisation rules).
    pub seq: AtomicU64,
    /// Epoch of the batch.
    pub epoch: u64,
    /// Step (batch number) of the batch.
    pub step: u64,
    /// Valid samples.
    pub count: u32,
    /// Zero.
    pub _pad: u32,
    /// Optional payload checksum (0 = none).
    pub checksum: u64,
    /// Zero.
    pub _reserved: [u64; 3],
}

/// Byte offsets of header fields (stable parts of the format).
pub mod offset {
    use super::*;
    /// `magic`.
    pub const MAGIC: usize = offset_of!(Header, magic);
    /// `version`.
    pub const VERSION: usize = offset_of!(Header, version);
    /// `state`.
    pub const STATE: usize = offset_of!(Header, state);
    /// `producer_pid`.
    pub const PRODUCER_PID: usize = offset_of!(Header, producer_pid);
    /// `consumer_pid`.
    pub const CONSUMER_PID: usize = offset_of!(Header, consumer_pid);
    /// `producer_heartbeat_ms`.
    pub const PRODUCER_HEARTBEAT: usize = offset_of!(Header, producer_heartbeat_ms);
    /// `consumer_heartbeat_ms`.
    pub const CONSUMER_HEARTBEAT: usize = offset_of!(Header, consumer_heartbeat_ms);
    /// `producer_start_ms`.
    pub const PRODUCER_START: usize = offset_of!(Header, producer_start_ms);
    /// `write_pos`.
    pub const WRITE_POS: usize = offset_of!(Header, write_pos);
    /// `read_pos`.
    pub const READ_POS: usize = offset_of!(Header, read_pos);
    /// `producer_pidns`.
    pub const PRODUCER_PIDNS: usize = offset_of!(Header, producer_pidns);
    /// `consumer_pidns`.
    pub const CONSUMER_PIDNS: usize = offset_of!(Header, consumer_pidns);
    /// `consumer_restart_wait_ms`.
    pub const CONSUMER_RESTART_WAIT: usize = offset_of!(Header, consumer_restart_wait_ms);
    /// `stats`.
    pub const STATS: usize = offset_of!(Header, stats);
    /// Slot meta: `seq`.
    pub const SLOT_SEQ: usize = offset_of!(SlotMeta, seq);
    /// Slot meta: `epoch`.
    pub const SLOT_EPOCH: usize = offset_of!(SlotMeta, epoch);
    /// Slot meta: `step`.
    pub const SLOT_STEP: usize = offset_of!(SlotMeta, step);
    /// Slot meta: `count`.
    pub const SLOT_COUNT: usize = offset_of!(SlotMeta, count);
    /// Slot meta: `checksum`.
    pub const SLOT_CHECKSUM: usize = offset_of!(SlotMeta, checksum);
}

// The format is pinned: these fail to compile if a field moves.
const _: () = {
    assert!(size_of::<Header>() <= HEADER_BYTES);
    assert!(align_of::<Header>() <= SLOT_ALIGN);
    assert!(size_of::<SlotMeta>() == SLOT_META_BYTES);
    assert!(size_of::<Stats>() == STATS_LEN * 8);
    assert!(offset::VERSION == 8);
    assert!(offset_of!(Header, slots) == 16);
    assert!(offset_of!(Header, pixel_layout) == 40);
    assert!(offset_of!(Header, slot_bytes) == 48);
    assert!(offset_of!(Header, mean) == 64);
    assert!(offset_of!(Header, std) == 76);
    assert!(offset_of!(Header, dataset_len) == 88);
    assert!(offset_of!(Header, total_steps) == 112);
    assert!(offset::STATE == 120);
    assert!(offset::PRODUCER_PID == 124);
    assert!(offset::CONSUMER_PID == 128);
    assert!(offset::PRODUCER_HEARTBEAT == 136);
    assert!(offset::READ_POS == 168);
    assert!(offset::CONSUMER_PIDNS == 184);
    assert!(offset_of!(Header, first_step) == 192);
    assert!(offset_of!(Header, rank) == 200);
    assert!(offset_of!(Header, world_size) == 204);
    assert!(offset_of!(Header, stream_key) == 208);
    assert!(offset::CONSUMER_RESTART_WAIT == 216);
    assert!(offset::STATS == 256);
    assert!(offset_of!(Header, group_count) == 512);
    assert!(offset_of!(Header, groups) == 520);
    assert!(offset_of!(Header, recipe) == 648);
    assert!(size_of::<Header>() == 680);
    assert!(offset::SLOT_COUNT == 24);
    assert!(offset::SLOT_CHECKSUM == 32);
};

/// Lifecycle of a ring, stored as `u32` in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum RingState {
    /// The producer is still writing the header (a zero-filled file is in this state).
    Initialising = 0,
    /// Batches are being produced.
    Running = 1,
    /// The producer finished; the consumer gets `Ok(None)` once everything is read.
    EndOfData = 2,
    /// The producer gave up; the consumer gets `Err(ProducerAborted)` once everything is read.
    Aborted = 3,
}

impl RingState {
    /// Decodes the header value; `None` for an unknown value.
    pub fn from_u32(v: u32) -> Option<RingState> {
        match v {
            0 => Some(RingState::Initialising),
            1 => Some(RingState::Running),
            2 => Some(RingState::EndOfData),
            3 => Some(RingState::Aborted),
            _ => None,
        }
    }

    /// The header encoding.
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

impl std::fmt::Display for RingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RingState::Initialising => "initialising",
            RingState::Running => "running",
            RingState::EndOfData => "end of data",
            RingState::Aborted => "aborted",
        })
    }
}

/// Rounds `x` up to a multiple of `to` (a power of two), `None` on overflow.
const fn round_up(x: usize, to: usize) -> Option<usize> {
    match x.checked_add(to - 1) {
        Some(v) => Some(v & !(to - 1)),
        None => None,
    }
}

/// A run of views of one shape, stored contiguously in a slot: `u8[views][B][C][height][width]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ViewGroup {
    /// Views of each sample in the group.
    pub views: u32,
    /// Height of the group's views.
    pub height: u32,
    /// Width of the group's views.
    pub width: u32,
}

/// A ring's view groups, in slot order (at most [`MAX_GROUPS`]; a fixed array, so geometries stay
/// `Copy`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ViewGroups {
    len: u8,
    groups: [ViewGroup; MAX_GROUPS],
}

impl ViewGroups {
    /// The groups of `groups` (panics on more than [`MAX_GROUPS`]; [`Geometry::validate`] checks
    /// the rest).
    pub fn new(groups: &[ViewGroup]) -> ViewGroups {
        assert!(
            groups.len() <= MAX_GROUPS,
            "at most {MAX_GROUPS} view groups, not {}",
            groups.len()
        );
        let mut all = [ViewGroup::default(); MAX_GROUPS];
        all[..groups.len()].copy_from_slice(groups);
        ViewGroups {
            len: groups.len() as u8,
            groups: all,
        }
    }

    /// The groups, in slot order.
    pub fn as_slice(&self) -> &[ViewGroup] {
        &self.groups[..self.len as usize]
    }
}

impl std::ops::Deref for ViewGroups {
    type Target = [ViewGroup];
    fn deref(&self) -> &[ViewGroup] {
        self.as_slice()
    }
}

impl fmt::Debug for ViewGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// Where one group lies in a slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupLayout {
    /// Offset of the group's first view, from the slot start (a multiple of 64).
    pub offset: usize,
    /// Views in the group.
    pub views: usize,
    /// Bytes of one view of the whole batch (`B * S_g`); view `k` of the group starts at
    /// `offset + k * view_bytes`.
    pub view_bytes: usize,
}

/// Byte offsets of the parts of one slot, relative to the slot start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLayout {
    /// `u32[batch_size]` labels.
    pub labels: usize,
    /// `u64[batch_size]` dataset indices.
    pub indices: usize,
    /// The view groups, `group_count` of them.
    pub groups: [GroupLayout; MAX_GROUPS],
    /// Number of groups.
    pub group_count: usize,
    /// Whole slot, a multiple of [`SLOT_ALIGN`].
    pub slot_bytes: usize,
}

impl SlotLayout {
    /// The groups' layouts.
    pub fn groups(&self) -> &[GroupLayout] {
        &self.groups[..self.group_count]
    }

    /// Views per sample.
    pub fn views(&self) -> usize {
        self.groups().iter().map(|g| g.views).sum()
    }

    /// Offset (from the slot start) and length of view `v` of the whole batch, `None` past the
    /// last view.
    pub fn view(&self, mut v: usize) -> Option<(usize, usize)> {
        for g in self.groups() {
            if v < g.views {
                return Some((g.offset + v * g.view_bytes, g.view_bytes));
            }
            v -= g.views;
        }
        None
    }

    /// Start of the pixels (group 0) and their end (the end of the last group).
    pub fn pixels(&self) -> std::ops::Range<usize> {
        let last = self.groups()[self.group_count - 1];
        self.groups[0].offset..last.offset + last.views * last.view_bytes
    }
}

/// Shape of one ring: slots, batch size, channels and the view groups; pixels are `u8`, NCHW
/// per view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Batches the ring holds at once.
    pub slots: u32,
    /// Samples per batch.
    pub batch_size: u32,
    /// Channels per pixel.
    pub channels: u32,
    /// The views of each sample, grouped by shape, in slot order.
    pub groups: ViewGroups,
}

impl Geometry {
    /// Two views of `height x width` per sample (Barlow Twins' shape).
    pub fn pairs(slots: u32, batch_size: u32, channels: u32, height: u32, width: u32) -> Geometry {
        Geometry {
            slots,
            batch_size,
            channels,
            groups: ViewGroups::new(&[ViewGroup {
                views: 2,
                height,
                width,
            }]),
        }
    }

    /// Views per sample, all groups.
    pub fn views(&self) -> usize {
        self.groups.iter().map(|g| g.views as usize).sum()
    }

    /// The groups as text, e.g. `2x224x224 + 8x96x96` (views x height x width).
    pub fn shape(&self) -> String {
        let parts: Vec<String> = self
            .groups
            .iter()
            .map(|g| format!("{}x{}x{}", g.views, g.height, g.width))
            .collect();
        parts.join(" + ")
    }

    fn checked_layout(&self) -> Option<SlotLayout> {
        let b = self.batch_size as usize;
        let labels = SLOT_META_BYTES;
        let indices = labels.checked_add(round_up(b.checked_mul(4)?, 64)?)?;
        let mut at = indices.checked_add(round_up(b.checked_mul(8)?, 64)?)?;
        let mut groups = [GroupLayout::default(); MAX_GROUPS];
        let mut end = at;
        for (out, g) in groups.iter_mut().zip(self.groups.iter()) {
            let sample = (self.channels as usize)
                .checked_mul(g.height as usize)?
                .checked_mul(g.width as usize)?;
            let view_bytes = b.checked_mul(sample)?;
            *out = GroupLayout {
                offset: at,
                views: g.views as usize,
                view_bytes,
            };
            end = at.checked_add(view_bytes.checked_mul(g.views as usize)?)?;
            at = round_up(end, 64)?;
        }
        let slot_bytes = round_up(end, SLOT_ALIGN)?;
        Some(SlotLayout {
            labels,
            indices,
            groups,
            group_count: self.groups.len(),
            slot_bytes,
        })
    }

    fn checked_file_bytes(&self) -> Option<usize> {
        let slot = self.checked_layout()?.slot_bytes;
        let all = (self.slots as usize)
            .checked_mul(slot)?
            .checked_add(HEADER_BYTES)?;
        // Must be addressable by pointer offsets and by file offsets.
        (all <= isize::MAX as usize && (all as u64) <= i64::MAX as u64).then_some(all)
    }

    /// Offsets of the parts of a slot. Panics if the geometry overflows (call [`Geometry::validate`] first).
    pub fn slot_layout(&self) -> SlotLayout {
        self.checked_layout()
            .expect("ring geometry overflows; call Geometry::validate first")
    }

    /// Bytes of one view of one sample in group `g`: `channels * height * width`.
    pub fn sample_bytes(&self, g: usize) -> usize {
        let g = self.groups[g];
        self.channels as usize * g.height as usize * g.width as usize
    }

    /// Bytes of one slot including its metadata, labels and indices, rounded up to 4096.
    pub fn slot_bytes(&self) -> usize {
        self.slot_layout().slot_bytes
    }

    /// Bytes of the whole ring file: header + `slots * slot_bytes`.
    pub fn file_bytes(&self) -> usize {
        self.checked_file_bytes()
            .expect("ring geometry overflows; call Geometry::validate first")
    }

    /// Checks bounds (slots 1..=1024, batch 1..=65536, channels 1..=4, 1..=8 groups of at least
    /// one view each, 64 views at most, heights and widths 1..=8192) and that every size is
    /// addressable.
    pub fn validate(&self) -> Result<(), RingError> {
        let bad = |reason: String| Err(RingError::BadGeometry { reason });
        let check = |name: &str, v: u32, max: u32| {
            if v == 0 || v > max {
                bad(format!("{name} must be in 1..={max}, got {v}"))
            } else {
                Ok(())
            }
        };
        check("slots", self.slots, MAX_SLOTS)?;
        check("batch_size", self.batch_size, MAX_BATCH)?;
        check("channels", self.channels, MAX_CHANNELS)?;
        if self.groups.is_empty() {
            return bad("a ring needs at least one view group".into());
        }
        for g in self.groups.iter() {
            check("a group's views", g.views, MAX_VIEWS)?;
            check("height", g.height, MAX_SIDE)?;
            check("width", g.width, MAX_SIDE)?;
        }
        if self.views() > MAX_VIEWS as usize {
            return bad(format!(
                "at most {MAX_VIEWS} views per sample, got {}",
                self.views()
            ));
        }
        if self.checked_file_bytes().is_none() {
            return bad(format!(
                "{self:?} needs more bytes than this machine can address"
            ));
        }
        Ok(())
    }
}

/// Everything the producer declares when it creates a ring; the consumer reads it back from the header.
#[derive(Clone, Debug, PartialEq)]
pub struct RingInfo {
    /// Shape of the ring.
    pub geometry: Geometry,
    /// Per-channel normalisation mean the consumer should apply (pixel/255 scale).
    pub mean: [f32; 3],
    /// Per-channel normalisation std the consumer should apply (pixel/255 scale).
    pub std: [f32; 3],
    /// Samples per epoch (after skipping).
    pub dataset_len: u64,
    /// Batches per epoch.
    pub steps_per_epoch: u64,
    /// The producer's seed.
    pub seed: u64,
    /// Planned batches (0 = unknown / unbounded).
    pub total_steps: u64,
    /// Stream position (global step) of the ring's first batch.
    pub first_step: u64,
    /// Data-parallel rank of this ring's stream.
    pub rank: u32,
    /// Data-parallel world size (>= 1, > `rank`).
    pub world_size: u32,
    /// Producer-defined fingerprint of whatever else decides the batches (0 = none); a
    /// producer taking the ring over must declare the same.
    pub stream_key: u64,
    /// The producer's name for what it makes (a recipe, e.g. `dino`; empty = unnamed): at most
    /// 31 bytes of UTF-8.
    pub recipe: String,
}

impl RingInfo {
    /// A `RingInfo` with the identity normalisation (mean 0, std 1) and zero counts; a producer
    /// declares the normalisation its payload needs.
    pub fn new(geometry: Geometry) -> RingInfo {
        RingInfo {
            geometry,
            mean: [0.0; 3],
            std: [1.0; 3],
            dataset_len: 0,
            steps_per_epoch: 0,
            seed: 0,
            total_steps: 0,
            first_step: 0,
            rank: 0,
            world_size: 1,
            stream_key: 0,
            recipe: String::new(),
        }
    }

    /// Validates the geometry and that mean is finite and std finite and positive.
    pub fn validate(&self) -> Result<(), RingError> {
        self.geometry.validate()?;
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(RingError::BadGeometry {
                reason: format!("mean {:?} must be finite", self.mean),
            });
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(RingError::BadGeometry {
                reason: format!("std {:?} must be finite and positive", self.std),
            });
        }
        if self.rank >= self.world_size {
            return Err(RingError::BadGeometry {
                reason: format!(
                    "rank {} must be below the world size {}",
                    self.rank, self.world_size
                ),
            });
        }
        if self.recipe.len() >= RECIPE_NAME_BYTES || self.recipe.contains('\0') {
            return Err(RingError::BadGeometry {
                reason: format!(
                    "the recipe name {:?} must be under {RECIPE_NAME_BYTES} bytes, without NUL",
                    self.recipe
                ),
            });
        }
        if self.first_step > MAX_POSITION {
            return Err(RingError::BadGeometry {
                reason: format!(
                    "first step {} is beyond any possible position ({MAX_POSITION})",
                    self.first_step
                ),
            });
        }
        Ok(())
    }

    /// What a producer declaring `self` would change in a ring declaring `ring`, one
    /// "field: the ring has X, this one Y" per difference (empty: the same stream). The ring's
    /// `first_step` is not compared: a producer taking a ring over continues from the ring's.
    pub fn differences_from(&self, ring: &RingInfo) -> Vec<String> {
        type Show = fn(&RingInfo) -> String;
        const FIELDS: [(&str, Show); 13] = [
            ("slots", |i| i.geometry.slots.to_string()),
            ("batch size", |i| i.geometry.batch_size.to_string()),
            ("channels", |i| i.geometry.channels.to_string()),
            ("views (views x height x width per group)", |i| {
                i.geometry.shape()
            }),
            ("recipe", |i| format!("{:?}", i.recipe)),
            ("mean", |i| format!("{:?}", i.mean)),
            ("std", |i| format!("{:?}", i.std)),
            ("dataset length", |i| i.dataset_len.to_string()),
            ("steps per epoch", |i| i.steps_per_epoch.to_string()),
            ("seed", |i| i.seed.to_string()),
            ("planned steps", |i| i.total_steps.to_string()),
            ("rank / world size", |i| {
                format!("{} of {}", i.rank, i.world_size)
            }),
            (
                "stream key (the producer's fingerprint of its other settings)",
                |i| format!("{:016x}", i.stream_key),
            ),
        ];
        FIELDS
            .iter()
            .filter_map(|(what, show)| {
                let (theirs, mine) = (show(ring), show(self));
                (theirs != mine).then(|| format!("{what}: the ring has {theirs}, this one {mine}"))
            })
            .collect()
    }

    /// Decodes and validates the fixed header fields against the ring file's size.
    pub(crate) fn from_header(h: &Header, file_len: u64) -> Result<RingInfo, RingError> {
        if h.header_bytes as usize != HEADER_BYTES {
            return Err(RingError::corrupt(format!(
                "header_bytes is {}, expected {HEADER_BYTES}",
                h.header_bytes
            )));
        }
        if h.pixel_layout != PIXEL_LAYOUT_U8_NCHW {
            return Err(RingError::corrupt(format!(
                "pixel_layout is {}, expected {PIXEL_LAYOUT_U8_NCHW} (u8 NCHW)",
                h.pixel_layout
            )));
        }
        let count = h.group_count as usize;
        if count == 0 || count > MAX_GROUPS {
            return Err(RingError::corrupt(format!(
                "group_count is {count}, expected 1..={MAX_GROUPS}"
            )));
        }
        let groups: Vec<ViewGroup> = h.groups[..count]
            .iter()
            .map(|&[views, height, width, _]| ViewGroup {
                views,
                height,
                width,
            })
            .collect();
        let geometry = Geometry {
            slots: h.slots,
            batch_size: h.batch_size,
            channels: h.channels,
            groups: ViewGroups::new(&groups),
        };
        geometry.validate().map_err(|e| match e {
            RingError::BadGeometry { reason } => {
                RingError::corrupt(format!("header geometry: {reason}"))
            }
            e => e,
        })?;
        if h.views as usize != geometry.views()
            || (h.height, h.width) != (groups[0].height, groups[0].width)
        {
            return Err(RingError::corrupt(format!(
                "views {} and group 0 shape {}x{} disagree with the group table {}",
                h.views,
                h.height,
                h.width,
                geometry.shape()
            )));
        }
        let name_len = h
            .recipe
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(RECIPE_NAME_BYTES);
        let recipe = std::str::from_utf8(&h.recipe[..name_len])
            .map_err(|_| RingError::corrupt("the recipe name is not UTF-8".to_string()))?
            .to_string();
        let slot_bytes = geometry.slot_bytes() as u64;
        if h.slot_bytes != slot_bytes {
            return Err(RingError::corrupt(format!(
                "slot_bytes is {}, but the geometry implies {slot_bytes}",
                h.slot_bytes
            )));
        }
        let file_bytes = geometry.file_bytes() as u64;
        if h.file_bytes != file_bytes {
            return Err(RingError::corrupt(format!(
                "file_bytes is {}, but the geometry implies {file_bytes}",
                h.file_bytes
            )));
        }
        if file_len != file_bytes {
            return Err(RingError::corrupt(format!(
                "the file is {file_len} bytes but its header declares {file_bytes} (truncated or overwritten?)"
            )));
        }
        let info = RingInfo {
            geometry,
            mean: h.mean,
            std: h.std,
            dataset_len: h.dataset_len,
            steps_per_epoch: h.steps_per_epoch,
            seed: h.seed,
            total_steps: h.total_steps,
            first_step: h.first_step,
            rank: h.rank,
            world_size: h.world_size,
            stream_key: h.stream_key,
            recipe,
        };
        info.validate().map_err(|e| match e {
            RingError::BadGeometry { reason } => RingError::corrupt(format!("header: {reason}")),
            e => e,
        })?;
        Ok(info)
    }
}
