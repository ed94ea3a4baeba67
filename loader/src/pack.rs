//! `loader --pack FILE`: samples read from a packed dataset (`datasets pack`), memory-mapped.
//!
//! The file is mapped once and checked ([`datasets::pack::PackView::parse`]); reading a sample is
//! a copy out of the map into the worker's buffer: no `open`, `read` or `close` per image, and the
//! page cache serves every worker. The pack keeps the folder's order and labels, so a pack and the
//! folder it came from give the same batches.

use std::path::{Path, PathBuf};

use anyhow::Context;
use datasets::pack::PackView;
use memmap2::Mmap;

use crate::source::SampleSource;

/// A memory-mapped pack file.
pub struct PackSource {
    path: PathBuf,
    map: Mmap,
    len: usize,
}

impl PackSource {
    /// Maps and checks `path`.
    pub fn open(path: &Path) -> anyhow::Result<PackSource> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening the pack {}", path.display()))?;
        // SAFETY: the map is read-only; a pack is written to a temporary name and renamed into
        // place, so it is not modified while mapped (a truncation by another program would be a
        // SIGBUS, as for any mapped file).
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("mapping the pack {}", path.display()))?;
        let len = PackView::parse(&map)
            .with_context(|| format!("reading the pack {}", path.display()))?
            .len();
        Ok(PackSource {
            path: path.to_path_buf(),
            map,
            len,
        })
    }

    /// Number of classes the pack was made with.
    pub fn classes(&self) -> usize {
        self.view().classes()
    }

    fn view(&self) -> PackView<'_> {
        // Checked in `open`; parsing again would walk the whole index, so the header is trusted.
        PackView::parse_unchecked(&self.map)
    }
}

impl SampleSource for PackSource {
    fn len(&self) -> usize {
        self.len
    }
    fn label(&self, index: usize) -> u32 {
        self.view().entry(index).label
    }
    fn name(&self, index: usize) -> String {
        format!("{}#{}", self.path.display(), self.view().name(index))
    }
    fn read(&self, index: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        buf.extend_from_slice(self.view().data(index));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::folder::ImageFolder;
    use datasets::pack::{write_pack, PackOptions};

    #[test]
    fn pack_source_reads_what_the_folder_holds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for class in ["x", "y"] {
            std::fs::create_dir_all(root.join(class)).unwrap();
            for i in 0..3 {
                std::fs::write(
                    root.join(class).join(format!("{i}.JPEG")),
                    format!("{class}{i}"),
                )
                .unwrap();
            }
        }
        let folder = ImageFolder::scan(&root).unwrap();
        let out = dir.path().join("p.pack");
        write_pack(&folder, &out, &PackOptions::default()).unwrap();
        let src = PackSource::open(&out).unwrap();
        let dir_src = crate::source::FolderSource { folder };
        assert_eq!(src.len(), dir_src.len());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..src.len() {
            src.read(i, &mut a).unwrap();
            dir_src.read(i, &mut b).unwrap();
            assert_eq!(a, b);
            assert_eq!(src.label(i), dir_src.label(i));
            assert!(src.name(i).ends_with(&format!("{}.JPEG", i % 3)));
        }
        std::fs::write(&out, b"BARLOWPK").unwrap();
        assert!(PackSource::open(&out).is_err());
    }
}
