//! Finding training samples (folders, packs, WebDataset shards) and making the built-in demo dataset.
//!
//! - [`folder`]: scan an ImageNet-style `root/<class>/<image>.JPEG` tree into labelled samples.
//! - [`pack`]: write and read packed datasets (one file of encoded images plus an index).
//! - [`source`]: the [`source::SampleSource`] seam (a sample's label, name and bytes), over a
//!   folder or a pack; [`opened`] picks the one a command reads (`--pack`, `--dir`, the demo).
//! - [`wds`]: WebDataset tar shards, memory-mapped and indexed (`--wds SPEC`).
//! - [`demo`]: draw a small procedural JPEG dataset with learnable class structure.
//!
//! **Architecture invariant:** `datasets` lists, reads and writes files; it never decodes images
//! for training (`pack --max-side` and the tests decode through the `decode` crate).

pub mod cache;
pub mod demo;
pub mod folder;
pub mod opened;
pub mod pack;
pub mod source;
pub mod wds;

pub use demo::{default_demo_dir, ensure_demo, write_demo, DemoOptions, DemoSummary};
pub use folder::{ImageFolder, Sample, IMAGE_EXTENSIONS};
