//! barlow's loader: decode (zune-jpeg, via the `decode` crate) -> two augmented views ->
//! shared-memory ring.
//!
//! Data flow: a [`source::SampleSource`] (a folder, or a [`pack`] file) yields encoded bytes; a
//! [`pair::PairMaker`] decodes them (the `decode` crate: Pillow's `convert('RGB')`, pixel cap and
//! panic guard inside), draws both views' parameters ([`params`]; every random choice keyed by
//! (seed, epoch, sample, view) in [`keyed_rng`]) and makes both views ([`augment`]; [`resample`],
//! [`color`] and [`blur`] are the Pillow-exact ops); [`pipeline`] drives epochs and batches, its
//! workers overlapping batches through [`handoff`], into a [`sink::BatchSink`]: the rings of a
//! run ([`ring_sink`], which [`restart`] opens or takes over and [`watch`] reports trainers on)
//! or memory ([`sink::MemorySink`]: [`measure`] for `loader bench`/`profile`, [`preview`], tests).
//! [`sampler`] shards each epoch between ranks; [`summary`] prints the end of a run; [`live`]
//! profiles a ring in use (`loader profile --shm`), [`report`] draws a profile as HTML with the
//! charts of [`plot`], and [`stat`] is `loader stat`.

pub mod augment;
pub mod blur;
pub mod color;
pub mod handoff;
pub mod keyed_rng;
pub mod live;
pub mod lut;
pub mod measure;
pub mod pack;
pub mod pair;
pub mod params;
pub mod pipeline;
pub mod planar;
pub mod plot;
pub mod preview;
pub mod report;
pub mod resample;
pub mod restart;
pub mod ring_sink;
pub mod sampler;
pub mod simd;
pub mod sink;
pub mod source;
pub mod stat;
pub mod summary;
pub mod watch;
