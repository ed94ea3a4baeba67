//! WebDataset tar shards as a [`SampleSource`] (`--wds SPEC`): random access, not a stream.
//!
//! - [`spec`]: which shards a SPEC names (brace patterns, a folder, a list file).
//! - [`tar`]: tar headers read in place from a memory map.
//! - [`index`]: a shard's samples (WebDataset's grouping by key) and the index cache.
//!
//! Samples come in a fixed order: shards as SPEC lists them, members in tar order. So dataset
//! indices, and with them every batch, resume and rank shard, are the same on every start. The
//! index is built once (tar headers and label members only, shards in parallel) and cached under
//! `<barlow cache>/wds-index/`, rebuilt for any shard whose size or modification time changed.

pub mod index;
pub mod spec;
pub mod tar;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use memmap2::Mmap;
use rayon::prelude::*;

use crate::source::SampleSource;
use index::{LabelKey, ShardIndex, Stamp};

/// `--wds SPEC` and `--label-key`, as every command that reads samples takes them.
#[derive(clap::Args, Debug, Clone)]
pub struct WdsArgs {
    /// WebDataset tar shards: a brace pattern ('/data/train-{0000..1023}.tar'), a folder of .tar
    /// files, or a text file listing shard paths. Samples: members grouped by key, the image from
    /// the first image member (jpg, png, ...), the label from --label-key; classes = max label + 1.
    #[arg(long, value_name = "SPEC")]
    pub wds: Option<String>,
    /// With --wds: the member holding the label: EXT (an ASCII integer, e.g. cls) or EXT:FIELD
    /// (an integer field of a JSON member, e.g. json:label; FIELD may be a dotted path).
    #[arg(long, default_value = "cls", value_name = "EXT[:FIELD]")]
    pub label_key: String,
}

impl Default for WdsArgs {
    fn default() -> Self {
        WdsArgs {
            wds: None,
            label_key: "cls".into(),
        }
    }
}

/// A sample's place: shard, byte range and label (its key is kept apart, for reports only).
#[derive(Clone, Copy, Debug)]
struct Place {
    shard: u32,
    label: u32,
    offset: u64,
    len: u64,
}

/// Shards memory-mapped and indexed: `read` copies a sample's image member out of the map.
pub struct WdsSource {
    shards: Vec<(PathBuf, Mmap)>,
    places: Vec<Place>,
    keys: Vec<String>,
    /// Samples left out, as (`shard#key`, reason).
    pub skipped: Vec<(String, String)>,
    /// Max label + 1.
    pub classes: usize,
    /// How the index was had, for the start message (`indexed ...` or `cached ...`).
    pub index_note: String,
}

impl WdsSource {
    /// Resolves `spec`, maps every shard and indexes those the cache (in barlow's cache
    /// directory) does not hold.
    pub fn open(spec: &str, label_key: &str) -> anyhow::Result<WdsSource> {
        Self::open_with_cache(spec, label_key, &crate::cache::barlow_cache_dir())
    }

    /// [`WdsSource::open`] with the index cache under `cache_dir`.
    pub fn open_with_cache(
        spec: &str,
        label_key: &str,
        cache_dir: &std::path::Path,
    ) -> anyhow::Result<WdsSource> {
        let start = Instant::now();
        let label_key = LabelKey::parse(label_key)?;
        let paths = spec::shard_paths(spec)?;
        let shards: Vec<(PathBuf, Mmap, Stamp)> = paths
            .par_iter()
            .map(|p| map_shard(p).map(|(m, s)| (p.clone(), m, s)))
            .collect::<anyhow::Result<_>>()?;
        let cache = index::cache_path(cache_dir, &paths, &label_key);
        let cached = std::fs::read(&cache)
            .ok()
            .and_then(|b| index::decode_cache(&b, &label_key))
            .unwrap_or_default();
        let indexes: Vec<(ShardIndex, bool)> = shards
            .par_iter()
            .enumerate()
            .map(|(i, (path, map, stamp))| {
                if let Some((p, s, ix)) = cached.get(i) {
                    if p == path && s == stamp {
                        return Ok((ix.clone(), false));
                    }
                }
                index::index_shard(map, &label_key)
                    .map(|ix| (ix, true))
                    .with_context(|| format!("--wds: {} cannot be read as a shard", path.display()))
            })
            .collect::<anyhow::Result<_>>()?;
        let built = indexes.iter().filter(|(_, b)| *b).count();
        if built > 0 {
            let parts: Vec<_> = shards
                .iter()
                .zip(&indexes)
                .map(|((p, _, s), (ix, _))| (p.as_path(), *s, ix))
                .collect();
            if let Err(e) = write_atomically(&cache, &index::encode_cache(&label_key, &parts)) {
                eprintln!(
                    "warning: cannot cache the shard index in {}: {e:#}",
                    cache.display()
                );
            }
        }
        let mut source = WdsSource {
            shards: Vec::with_capacity(shards.len()),
            places: Vec::new(),
            keys: Vec::new(),
            skipped: Vec::new(),
            classes: 0,
            index_note: String::new(),
        };
        for (s, ((path, map, _), (ix, _))) in shards.into_iter().zip(indexes).enumerate() {
            for e in ix.samples {
                source.classes = source.classes.max(e.label as usize + 1);
                source.places.push(Place {
                    shard: s as u32,
                    label: e.label,
                    offset: e.offset,
                    len: e.len,
                });
                source.keys.push(e.key);
            }
            let shown = path.display();
            source.skipped.extend(
                ix.skipped
                    .into_iter()
                    .map(|(k, why)| (format!("{shown}#{k}"), why)),
            );
            source.shards.push((path, map));
        }
        source.index_note = format!(
            "{} of {} shards indexed, {} read from the index cache {}, in {:.2} s",
            built,
            source.shards.len(),
            source.shards.len() - built,
            cache.display(),
            start.elapsed().as_secs_f64()
        );
        Ok(source)
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard file and key of sample `index`.
    pub fn shard_and_key(&self, index: usize) -> (&std::path::Path, &str) {
        let p = self.places[index];
        (&self.shards[p.shard as usize].0, &self.keys[index])
    }
}

/// Opens and maps one shard, refusing empty and compressed files.
fn map_shard(path: &std::path::Path) -> anyhow::Result<(Mmap, Stamp)> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("--wds: opening the shard {}", path.display()))?;
    let meta = file.metadata()?;
    if meta.len() < 512 {
        anyhow::bail!(
            "--wds: the shard {} has {} bytes, not a tar file",
            path.display(),
            meta.len()
        );
    }
    // SAFETY: read-only map; a shard changed while mapped could fault (as for a pack), and a
    // changed size or modification time re-indexes it at the next start.
    let map = unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
    for (magic, what) in [
        (&b"\x1f\x8b"[..], "gzip (`zcat SHARD > SHARD.tar`)"),
        (b"\x28\xb5\x2f\xfd", "zstd (`zstd -dc SHARD > SHARD.tar`)"),
        (b"BZh", "bzip2 (`bzcat SHARD > SHARD.tar`)"),
        (b"\xfd7zXZ\0", "xz (`xzcat SHARD > SHARD.tar`)"),
    ] {
        if map.starts_with(magic) {
            anyhow::bail!(
                "--wds: the shard {} is compressed with {}; compressed shards cannot be read at random, decompress them first",
                path.display(),
                what.replace("SHARD", &path.display().to_string())
            );
        }
    }
    Ok((map, Stamp::of(&meta)))
}

/// Writes `bytes` to a temporary name beside `path`, then renames it into place.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("partial{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

impl SampleSource for WdsSource {
    fn len(&self) -> usize {
        self.places.len()
    }
    fn label(&self, index: usize) -> u32 {
        self.places[index].label
    }
    fn name(&self, index: usize) -> String {
        let (shard, key) = self.shard_and_key(index);
        format!("{}#{key}", shard.display())
    }
    fn read(&self, index: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let p = self.places[index];
        let map = &self.shards[p.shard as usize].1;
        buf.clear();
        // Within the map: checked at indexing, and the cache is only used for an unchanged size.
        buf.extend_from_slice(&map[p.offset as usize..(p.offset + p.len) as usize]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::tar::build::{file, finish, Long};
    use super::*;

    #[test]
    fn source_reads_shards_in_order_and_reuses_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let dir = tmp.path().join("shards");
        std::fs::create_dir_all(&dir).unwrap();
        for s in 0..2 {
            let mut tar = Vec::new();
            for k in 0..3 {
                file(
                    &mut tar,
                    &format!("s{s}k{k}.jpg"),
                    format!("img{s}{k}").as_bytes(),
                    Long::No,
                );
                file(
                    &mut tar,
                    &format!("s{s}k{k}.cls"),
                    format!("{}", s * 3 + k).as_bytes(),
                    Long::No,
                );
            }
            file(&mut tar, &format!("s{s}bad.jpg"), b"x", Long::No);
            finish(&mut tar);
            std::fs::write(dir.join(format!("shard-{s}.tar")), tar).unwrap();
        }
        let spec = format!("{}/shard-{{0..1}}.tar", dir.display());
        let src = WdsSource::open_with_cache(&spec, "cls", &cache).unwrap();
        assert!(
            src.index_note.starts_with("2 of 2 shards indexed"),
            "{}",
            src.index_note
        );
        assert_eq!((src.len(), src.classes, src.shard_count()), (6, 6, 2));
        let mut buf = Vec::new();
        for i in 0..6 {
            src.read(i, &mut buf).unwrap();
            assert_eq!(buf, format!("img{}{}", i / 3, i % 3).as_bytes());
            assert_eq!(src.label(i), i as u32);
        }
        assert!(src.name(4).ends_with("shard-1.tar#s1k1"), "{}", src.name(4));
        assert_eq!(src.skipped.len(), 2);
        assert!(src.skipped[1].0.ends_with("shard-1.tar#s1bad"));

        let again = WdsSource::open_with_cache(&spec, "cls", &cache).unwrap();
        assert!(
            again.index_note.starts_with("0 of 2"),
            "{}",
            again.index_note
        );
        assert_eq!(again.skipped, src.skipped);
        // A changed shard is indexed again, the other comes from the cache.
        let mut tar = Vec::new();
        file(&mut tar, "new.jpg", b"new", Long::No);
        file(&mut tar, "new.cls", b"9", Long::No);
        finish(&mut tar);
        std::fs::write(dir.join("shard-1.tar"), tar).unwrap();
        let changed = WdsSource::open_with_cache(&spec, "cls", &cache).unwrap();
        assert!(
            changed.index_note.starts_with("1 of 2"),
            "{}",
            changed.index_note
        );
        assert_eq!((changed.len(), changed.classes), (4, 10));

        std::fs::write(dir.join("shard-1.tar"), [0x1f, 0x8b, 8, 0].repeat(200)).unwrap();
        let e = format!(
            "{:#}",
            WdsSource::open_with_cache(&spec, "cls", &cache)
                .err()
                .unwrap()
        );
        assert!(e.contains("gzip") && e.contains("zcat"), "{e}");
        std::fs::write(dir.join("shard-1.tar"), vec![b'<'; 600]).unwrap();
        let e = format!(
            "{:#}",
            WdsSource::open_with_cache(&spec, "cls", &cache)
                .err()
                .unwrap()
        );
        assert!(e.contains("shard-1.tar") && e.contains("not a tar"), "{e}");
    }
}
