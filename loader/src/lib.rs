//! barlow's loader: decode (zune-jpeg) -> two augmented views -> shared-memory ring.
//!
//! Data flow: a [`source::SampleSource`] yields encoded bytes; [`decode`] turns them into RGB;
//! [`augment`] makes each view (random resized crop, flip) straight into a ring slot;
//! [`pipeline`] drives epochs, batches and the worker pool; [`keyed_rng`] makes every random
//! choice a function of (seed, epoch, sample, view) alone.

pub mod augment;
pub mod decode;
pub mod keyed_rng;
pub mod pipeline;
pub mod source;
