//! Finding training samples and making the built-in demo dataset.
//!
//! - [`folder`]: scan an ImageNet-style `root/<class>/<image>.JPEG` tree into labelled samples.
//! - [`pack`]: write and read packed datasets (one file of encoded images plus an index).
//! - [`demo`]: draw a small procedural JPEG dataset with learnable class structure.

pub mod demo;
pub mod folder;
pub mod pack;

pub use demo::{default_demo_dir, ensure_demo, write_demo, DemoOptions, DemoSummary};
pub use folder::{ImageFolder, Sample, IMAGE_EXTENSIONS};
