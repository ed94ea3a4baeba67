//! barlow's loader: decode (zune-jpeg) -> two augmented views -> shared-memory ring.
//!
//! Data flow: a [`source::SampleSource`] (a folder, or a [`pack`] file) yields encoded bytes; [`decode`] turns them into RGB as
//! Pillow's `convert('RGB')` would; [`augment`] makes each view with the paper's pipeline
//! ([`params`] says what is drawn; [`resample`], [`color`] and [`blur`] are the Pillow-exact ops)
//! straight into a ring slot; [`pipeline`] drives epochs, batches and the worker pool;
//! [`keyed_rng`] makes every random choice a function of (seed, epoch, sample, view) alone;
//! [`preview`] implements `loader preview` and `loader augment`; [`sampler`] shards each epoch
//! between ranks; [`guard`] turns decoder panics into bad files; [`watch`] reports trainers coming
//! and going; [`restart`] creates or takes over rings and hands them over when stopped under a
//! waiting trainer; [`measure`], [`report`] and [`stat`] are `loader bench`/`profile`/`stat`.

pub mod augment;
pub mod blur;
pub mod color;
pub mod handoff;
pub mod keyed_rng;
pub mod lut;
pub mod measure;
pub mod pack;
pub mod pair;
pub mod params;
pub mod pipeline;
pub mod planar;
pub mod preview;
pub mod report;
pub mod resample;
pub mod restart;
pub mod ring_sink;
pub mod sampler;
pub(crate) mod simd;
pub mod sink;
pub mod source;
pub mod stat;
pub mod summary;
pub mod watch;
