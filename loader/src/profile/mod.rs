//! The profiling tool: where a loader's time goes, alone or feeding a trainer.
//!
//! - [`measure`]: `loader bench` and `loader profile` without a ring: the pipeline into a
//!   [`crate::sink::MemorySink`] that drops every batch; stage times, CPU time, a timeline.
//! - [`live`]: `loader profile --shm`: readings of a ring in use (read-only) turned into a verdict
//!   over time, both sides' rates and the cores that would keep the trainer fed.
//! - [`report`]: either profile as a self-contained HTML page, with the SVG charts of [`plot`].
//! - [`stat`]: `loader stat`, a line a second about a live ring.
//!
//! Nothing else in the loader depends on this module (the pipeline and the sinks do not know it
//! exists), so the plotting library stays out of everything but the `loader` binary.

pub mod live;
pub mod measure;
pub mod plot;
pub mod report;
pub mod stat;
