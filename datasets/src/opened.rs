//! The samples a command reads: a pack file, a folder, or the built-in demo dataset, chosen in one
//! place from the command line's `--pack` / `--dir`.

use std::path::Path;

use crate::pack::PackSource;
use crate::source::{FolderSource, SampleSource};

/// The samples a command reads, with a description for messages.
pub struct OpenedSource {
    pub source: Box<dyn SampleSource>,
    /// The folder or pack file, for messages.
    pub description: String,
    pub classes: usize,
}

impl OpenedSource {
    /// `--pack FILE`, else the folder `--dir`, else the built-in demo dataset (made on first use):
    /// the one place this choice is made. Files the folder scan skipped are reported on stderr,
    /// each message starting with `program` (the command's name).
    pub fn open(
        program: &str,
        dir: Option<&Path>,
        pack: Option<&Path>,
    ) -> anyhow::Result<OpenedSource> {
        if let Some(pack) = pack {
            let source = PackSource::open(pack)?;
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
                let dir = crate::demo::default_demo_dir();
                eprintln!(
                    "{program}: no --dir given, using the built-in demo dataset in {}",
                    dir.display()
                );
                crate::demo::ensure_demo(&dir)?
            }
        };
        let source = FolderSource::open(&dir)?;
        for (path, why) in &source.folder.skipped {
            eprintln!("{program}: skipping {}: {why}", path.display());
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
