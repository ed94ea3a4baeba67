//! Where sample bytes come from: the seam between "which files" and "how they are read".
//!
//! The pipeline only asks a [`SampleSource`] for a sample's label, a name to report, and its bytes
//! (read into a caller-owned buffer, so reading allocates nothing in the steady state). A folder of
//! files is one source ([`FolderSource`]); a packed dataset file is another
//! ([`crate::pack::PackSource`]); [`crate::opened::OpenedSource`] picks one from the command line.

use std::io::Read;
use std::path::Path;

use crate::folder::ImageFolder;

/// A fixed, indexable list of labelled samples.
pub trait SampleSource: Sync {
    /// Number of samples (dataset indices are `0..len`).
    fn len(&self) -> usize;
    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Class label of sample `index`.
    fn label(&self, index: usize) -> u32;
    /// Human-readable name of sample `index` for reports (a path, or pack name + index).
    fn name(&self, index: usize) -> String;
    /// Reads the sample's encoded bytes into `buf` (cleared first).
    fn read(&self, index: usize, buf: &mut Vec<u8>) -> std::io::Result<()>;
}

/// An ImageNet-style folder (`root/<class>/<file>`), read file by file.
pub struct FolderSource {
    pub folder: ImageFolder,
}

impl FolderSource {
    /// Scans `root` (classes sorted by name get labels 0..K-1, like torchvision's ImageFolder).
    pub fn open(root: &Path) -> anyhow::Result<FolderSource> {
        Ok(FolderSource {
            folder: ImageFolder::scan(root)?,
        })
    }
}

impl SampleSource for FolderSource {
    fn len(&self) -> usize {
        self.folder.samples.len()
    }
    fn label(&self, index: usize) -> u32 {
        self.folder.samples[index].label
    }
    fn name(&self, index: usize) -> String {
        self.folder.samples[index].path.display().to_string()
    }
    fn read(&self, index: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        std::fs::File::open(&self.folder.samples[index].path)?.read_to_end(buf)?;
        Ok(())
    }
}
