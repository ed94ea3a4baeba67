//! The shared-memory ring that the barlow loader (producer) and trainer (consumer) agree on.
//!
//! The loader writes paired, augmented image batches into a ring file (normally in
//! `/dev/shm`); the trainer maps the same file and reads them in order. This crate knows
//! nothing of images or models: it defines the on-memory format ([`layout`]), ring naming
//! ([`ring_path`]), the [`Producer`] and [`Consumer`] ends, a read-only [`Observer`],
//! liveness detection ([`liveness`]), the ownership rule ([`ownership`]), taking over a ring
//! whose producer died ([`Producer::open`]) and live statistics ([`Stats`], [`stat`]).
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use std::time::Duration;
//! use shared::{ring_path, Consumer, Geometry, Producer, RingInfo};
//!
//! let path = ring_path("barlow-demo").unwrap();
//! let geometry = Geometry::pairs(4, 8, 3, 32, 32);
//! let mut producer = Producer::create(&path, &RingInfo::new(geometry)).unwrap();
//! let stop = AtomicBool::new(false);
//! let mut slot = producer.acquire(&stop).unwrap();
//! slot.set_meta(0, 0, 8);
//! slot.parts_mut().view(0).fill(7);
//! slot.publish();
//! producer.finish();
//!
//! let mut consumer = Consumer::attach(&path, Duration::from_secs(5)).unwrap();
//! while let Some(batch) = consumer.next().unwrap() {
//!     assert_eq!(batch.view(0)[0], 7);
//! }
//! ```

#![warn(missing_docs)]

pub mod checksum;
mod consumer;
mod error;
mod flow;
pub mod layout;
pub mod liveness;
mod map;
mod name;
mod observer;
pub mod ownership;
mod producer;
mod stats;
mod takeover;

pub use checksum::{fnv1a64, fnv1a64_update};
pub use consumer::{Batch, Consumer, MappingGuard, ProducerEvent};
pub use error::RingError;
pub use flow::{Flow, Verdict, WAIT_THRESHOLD};
pub use layout::{
    Geometry, RingInfo, RingState, SlotLayout, ViewGroup, ViewGroups, FORMAT_VERSION, HEADER_BYTES,
    MAGIC, MAX_GROUPS, MAX_VIEWS,
};
pub use name::{ring_path, MAX_NAME_LEN, SHM_DIR};
pub use observer::{Observer, Snapshot};
pub use producer::{Producer, SlotMut, SlotParts};
pub use stats::{stat, Stats, STATS_LEN};
pub use takeover::{Opened, Takeover};
