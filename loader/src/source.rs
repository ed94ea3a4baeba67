//! Where sample bytes come from: the seam between "which files" and "how they are read".
//!
//! The pipeline only asks a [`SampleSource`] for a sample's label, a name to report, and its bytes
//! (read into a caller-owned buffer, so reading allocates nothing in the steady state). A folder of
//! files is one source; a packed dataset file is another.

use std::io::Read;
use std::path::Path;

use datasets::folder::ImageFolder;

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

/// The samples a command reads, with a description for messages.
pub struct OpenedSource {
    pub source: Box<dyn SampleSource>,
    /// The folder or pack file, for messages.
    pub description: String,
    pub classes: usize,
}

impl OpenedSource {
    /// `--pack FILE`, else the folder `--dir`, else the built-in demo dataset (made on first use):
    /// the one place this choice is made. Files the folder scan skipped are reported on stderr.
    pub fn open(dir: Option<&Path>, pack: Option<&Path>) -> anyhow::Result<OpenedSource> {
        if let Some(pack) = pack {
            let source = crate::pack::PackSource::open(pack)?;
            let classes = source.classes();
            return Ok(OpenedSource {
                source: Box::new(source),
                description: pack.display().to_string(),
                classes,
            });
        }
        let dir = match dir {
            Some(dir) => dir.to_path_buf(),
            None => {
                let dir = datasets::demo::default_demo_dir();
                eprintln!(
                    "loader: no --dir given, using the built-in demo dataset in {}",
                    dir.display()
                );
                datasets::demo::ensure_demo(&dir)?
            }
        };
        let source = FolderSource::open(&dir)?;
        for (path, why) in &source.folder.skipped {
            eprintln!("loader: skipping {}: {why}", path.display());
        }
        if source.is_empty() {
            anyhow::bail!("no images in {}", dir.display());
        }
        let classes = source.folder.classes.len();
        Ok(OpenedSource {
            source: Box::new(source),
            description: dir.display().to_string(),
            classes,
        })
    }
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
