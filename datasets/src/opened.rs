//! The samples a command reads: a pack file, WebDataset shards, a folder, or the built-in demo
//! dataset, chosen in one place from the command line's `--pack` / `--wds` / `--dir`.

use std::path::Path;

use crate::pack::PackSource;
use crate::source::{FolderSource, SampleSource};
use crate::wds::{WdsArgs, WdsSource};

/// The samples a command reads, with a description for messages.
pub struct OpenedSource {
    pub source: Box<dyn SampleSource>,
    /// The folder, pack file or shards, for messages.
    pub description: String,
    pub classes: usize,
}

impl OpenedSource {
    /// `--pack FILE`, else `--wds SPEC`, else the folder `--dir`, else the built-in demo dataset
    /// (made on first use): the one place this choice is made. Files the folder scan skipped and
    /// samples left out of shards are reported on stderr, each message starting with `program`
    /// (the command's name).
    pub fn open(
        program: &str,
        dir: Option<&Path>,
        pack: Option<&Path>,
        wds: Option<&WdsArgs>,
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
        if let Some((spec, args)) = wds.and_then(|w| Some((w.wds.as_deref()?, w))) {
            let source = WdsSource::open(spec, &args.label_key)?;
            eprintln!("{program}: {}", source.index_note);
            const SHOWN: usize = 20;
            for (at, why) in source.skipped.iter().take(SHOWN) {
                eprintln!("{program}: skipping {at}: {why}");
            }
            if source.skipped.len() > SHOWN {
                eprintln!(
                    "{program}: ... and {} more samples left out of the shards",
                    source.skipped.len() - SHOWN
                );
            }
            if source.is_empty() {
                anyhow::bail!("no usable samples in the shards of --wds {spec}");
            }
            return Ok(OpenedSource {
                description: format!(
                    "{} WebDataset shards ({spec}; {} samples left out)",
                    source.shard_count(),
                    source.skipped.len()
                ),
                classes: source.classes,
                source: Box::new(source),
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
