//! barlow's loader: samples (the `datasets` crate) -> decoded images and their views (the `views`
//! crate) -> batches -> shared-memory rings.
//!
//! Data flow: a [`datasets::source::SampleSource`] (a folder, or a pack file) yields encoded
//! bytes; each worker's [`views::sample::SampleMaker`] decodes each sample once and makes every view of its recipe ([`recipe_args`] reads which); [`pipeline`]
//! drives epochs and batches, its workers overlapping batches through [`handoff`], into a
//! [`sink::BatchSink`]: the rings of a run ([`ring_sink`], which opens or takes over each ring,
//! builds its header and reports trainers attaching) or memory ([`sink::MemorySink`]: `loader
//! bench`/`profile`, [`preview`], tests). [`sampler`] shards each epoch between ranks;
//! [`summary`] prints the end of a run. [`profile`] is the profiling tool: `loader bench`,
//! `loader profile` (alone or on a ring in use, with an HTML report) and `loader stat`.

pub mod decode_args;
pub mod handoff;
pub mod pipeline;
pub mod preview;
pub mod profile;
pub mod recipe_args;
pub mod ring_sink;
pub mod sampler;
pub mod sink;
pub mod summary;
