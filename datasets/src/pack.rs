//! Packed datasets: one file of encoded images plus an index, read by `loader --pack FILE` with a
//! memory map, so reading a sample costs no `open`/`read`/`close` (FFCV's idea, for the same
//! reason: on ImageNet-sized data, opening 1.28M small files per epoch is a cost of its own).
//!
//! `datasets pack --dir DIR --out FILE [--max-side N] [--quality Q]` writes one from an
//! ImageNet-style folder, in the folder's sample order (same labels and dataset indices as
//! `loader --dir DIR`); `datasets pack --wds SPEC` from WebDataset shards, in their order. With `--max-side N`, JPEGs whose long side exceeds N are decoded, shrunk by
//! pixel-area averaging (like FFCV's `max_resolution` with OpenCV's INTER_AREA) and re-encoded at
//! quality Q; other files (and files that do not decode) are stored byte for byte.
//!
//! # Format (version 1, little-endian)
//!
//! | bytes | what |
//! |---|---|
//! | 0..8 | magic `BARLOWPK` |
//! | 8..12 | version (1) |
//! | 12..16 | reserved (0) |
//! | 16..24 | sample count `n` |
//! | 24..32 | class count `k` |
//! | 32..40 | offset of the index |
//! | 40..48 | offset of the names |
//! | 48..56 | total file size |
//! | 56..64 | reserved (0) |
//! | 64.. | sample bytes, back to back |
//! | index | `n` entries of 24 bytes: data offset u64, data length u32, label u32, name offset u32 and name length u32 (relative to the names) |
//! | names | the `k` class names (u32 length + UTF-8), then each sample's relative path (UTF-8, located by its index entry) |

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use rayon::prelude::*;

use crate::folder::ImageFolder;
use crate::source::SampleSource;
use memmap2::Mmap;

pub const MAGIC: &[u8; 8] = b"BARLOWPK";
pub const VERSION: u32 = 1;
const HEADER: usize = 64;
const ENTRY: usize = 24;

/// Options of [`write_pack`].
#[derive(Clone, Debug, Default)]
pub struct PackOptions {
    /// Shrink JPEGs whose long side is above this many pixels.
    pub max_side: Option<u32>,
    /// JPEG quality of re-encoded images.
    pub quality: u8,
    /// The decoder that reads the JPEGs `max_side` shrinks.
    pub decoder: decode::Decoder,
}

/// What [`write_pack`] wrote.
#[derive(Clone, Debug, Default)]
pub struct PackSummary {
    pub samples: usize,
    pub classes: usize,
    pub resized: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// One sample of a pack, as [`PackView::entry`] returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub offset: u64,
    pub len: u32,
    pub label: u32,
    name_offset: u32,
    name_len: u32,
}

/// Writes the samples of `folder` into the pack file `out` (see [`write_source_pack`]), named by
/// their paths relative to the folder.
pub fn write_pack(
    folder: &ImageFolder,
    out: &Path,
    opts: &PackOptions,
) -> anyhow::Result<PackSummary> {
    let rel = |i: usize| {
        let path = &folder.samples[i].path;
        path.strip_prefix(&folder.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    };
    let source = crate::source::FolderSource {
        folder: folder.clone(),
    };
    write_source_pack(&source, &folder.classes, &rel, out, opts)
}

/// Writes every sample of `source` (in its order, with its labels and `classes`' names, each named
/// `name(index)`) into the pack file `out`, written to a temporary name in the same directory,
/// then renamed, so a reader never sees a half-written pack.
pub fn write_source_pack(
    source: &dyn SampleSource,
    classes: &[String],
    name: &(dyn Fn(usize) -> String + Sync),
    out: &Path,
    opts: &PackOptions,
) -> anyhow::Result<PackSummary> {
    let tmp = out.with_extension("partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&[0u8; HEADER])?;
    let mut summary = PackSummary {
        samples: source.len(),
        classes: classes.len(),
        ..PackSummary::default()
    };
    let mut entries = Vec::with_capacity(source.len());
    let mut names = Vec::new();
    for class in classes {
        names.extend_from_slice(&(class.len() as u32).to_le_bytes());
        names.extend_from_slice(class.as_bytes());
    }
    let mut offset = HEADER as u64;
    // Chunks read (and, with --max-side, re-encoded) in parallel, written in order.
    let indices: Vec<usize> = (0..source.len()).collect();
    for chunk in indices.chunks(256) {
        let blobs: Vec<anyhow::Result<(Vec<u8>, u64, bool)>> = chunk
            .par_iter()
            .map(|&i| {
                let mut bytes = Vec::new();
                source
                    .read(i, &mut bytes)
                    .with_context(|| format!("reading {}", source.name(i)))?;
                let n = bytes.len() as u64;
                match opts
                    .max_side
                    .and_then(|m| shrink_jpeg(&bytes, m, opts.quality, opts.decoder))
                {
                    Some(small) => Ok((small, n, true)),
                    None => Ok((bytes, n, false)),
                }
            })
            .collect();
        for (&i, blob) in chunk.iter().zip(blobs) {
            let (bytes, n_in, resized) = blob?;
            ensure!(
                bytes.len() <= u32::MAX as usize,
                "{} is over 4 GiB",
                source.name(i)
            );
            w.write_all(&bytes)?;
            let rel = name(i);
            entries.push(PackEntry {
                offset,
                len: bytes.len() as u32,
                label: source.label(i),
                name_offset: names.len() as u32,
                name_len: rel.len() as u32,
            });
            names.extend_from_slice(rel.as_bytes());
            offset += bytes.len() as u64;
            summary.bytes_in += n_in;
            summary.resized += resized as usize;
        }
    }
    summary.bytes_out = offset;
    let index_offset = offset;
    for e in &entries {
        w.write_all(&e.offset.to_le_bytes())?;
        w.write_all(&e.len.to_le_bytes())?;
        w.write_all(&e.label.to_le_bytes())?;
        w.write_all(&e.name_offset.to_le_bytes())?;
        w.write_all(&e.name_len.to_le_bytes())?;
    }
    let names_offset = index_offset + (entries.len() * ENTRY) as u64;
    w.write_all(&names)?;
    let total = names_offset + names.len() as u64;
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    for v in [
        entries.len() as u64,
        classes.len() as u64,
        index_offset,
        names_offset,
        total,
        0,
    ] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    w.seek(SeekFrom::Start(0))?;
    w.write_all(&header)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(summary)
}

/// A pack's bytes (e.g. a memory map), checked once, read by index.
#[derive(Clone, Copy)]
pub struct PackView<'a> {
    bytes: &'a [u8],
    len: usize,
    classes: usize,
    index: usize,
    names: usize,
}

impl std::fmt::Debug for PackView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackView")
            .field("bytes", &self.bytes.len())
            .field("samples", &self.len)
            .field("classes", &self.classes)
            .finish()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl<'a> PackView<'a> {
    /// Checks the header and that every index entry points inside the file.
    pub fn parse(bytes: &'a [u8]) -> anyhow::Result<PackView<'a>> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            bail!("not a barlow pack (no BARLOWPK header); make one with `datasets pack --dir DIR --out FILE`");
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            bail!("pack format version {version}, this build reads version {VERSION}");
        }
        let (len, classes) = (u64_at(bytes, 16) as usize, u64_at(bytes, 24) as usize);
        let (index, names, total) = (
            u64_at(bytes, 32) as usize,
            u64_at(bytes, 40) as usize,
            u64_at(bytes, 48) as usize,
        );
        if total != bytes.len()
            || index.checked_add(len.saturating_mul(ENTRY)) != Some(names)
            || names > total
        {
            bail!(
                "pack is truncated or corrupt (header says {total} bytes, file has {})",
                bytes.len()
            );
        }
        let view = PackView {
            bytes,
            len,
            classes,
            index,
            names,
        };
        let names_len = (total - names) as u64;
        for i in 0..len {
            let e = view.entry(i);
            if !matches!(e.offset.checked_add(e.len as u64), Some(end) if e.offset >= HEADER as u64 && end <= index as u64)
                || e.name_offset as u64 + e.name_len as u64 > names_len
                || e.label as usize >= classes.max(1)
            {
                bail!("pack entry {i} is corrupt");
            }
        }
        Ok(view)
    }

    /// A view of bytes already checked by [`PackView::parse`] (reads the header only).
    pub fn parse_unchecked(bytes: &'a [u8]) -> PackView<'a> {
        PackView {
            bytes,
            len: u64_at(bytes, 16) as usize,
            classes: u64_at(bytes, 24) as usize,
            index: u64_at(bytes, 32) as usize,
            names: u64_at(bytes, 40) as usize,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn entry(&self, i: usize) -> PackEntry {
        let at = self.index + i * ENTRY;
        PackEntry {
            offset: u64_at(self.bytes, at),
            len: u32_at(self.bytes, at + 8),
            label: u32_at(self.bytes, at + 12),
            name_offset: u32_at(self.bytes, at + 16),
            name_len: u32_at(self.bytes, at + 20),
        }
    }

    /// The encoded bytes of sample `i`.
    pub fn data(&self, i: usize) -> &'a [u8] {
        let e = self.entry(i);
        &self.bytes[e.offset as usize..e.offset as usize + e.len as usize]
    }

    /// The sample's path relative to the folder it was packed from.
    pub fn name(&self, i: usize) -> String {
        let e = self.entry(i);
        let at = self.names + e.name_offset as usize;
        String::from_utf8_lossy(&self.bytes[at..at + e.name_len as usize]).into_owned()
    }
}

/// Decodes a JPEG whose long side exceeds `max_side` (with `decoder`, through the `decode` crate:
/// Pillow's pixel cap and the panic guard included), shrinks it by area averaging so that the long
/// side is `max_side`, and re-encodes it (as greyscale when every pixel is grey, as a greyscale
/// JPEG decodes); `None` when it is small enough or not a decodable JPEG.
fn shrink_jpeg(
    bytes: &[u8],
    max_side: u32,
    quality: u8,
    decoder: decode::Decoder,
) -> Option<Vec<u8>> {
    if !bytes.starts_with(&[0xFF, 0xD8]) || max_side == 0 {
        return None;
    }
    let mut image = decode::RgbImage::default();
    decoder
        .decode(bytes, decode::DEFAULT_MAX_PIXELS, &mut image)
        .ok()?;
    let (w, h) = (image.width, image.height);
    if w.max(h) as u32 <= max_side {
        return None;
    }
    let grey = image
        .pixels
        .chunks_exact(3)
        .all(|p| p[0] == p[1] && p[1] == p[2]);
    let (px, channels) = if grey {
        (image.pixels.iter().step_by(3).copied().collect(), 1)
    } else {
        (image.pixels, 3)
    };
    let scale = max_side as f64 / w.max(h) as f64;
    let (ow, oh) = (
        ((w as f64 * scale).round() as usize).max(1),
        ((h as f64 * scale).round() as usize).max(1),
    );
    let small = area_resize(&px, w, h, channels, ow, oh);
    let color = if channels == 3 {
        jpeg_encoder::ColorType::Rgb
    } else {
        jpeg_encoder::ColorType::Luma
    };
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(&small, ow as u16, oh as u16, color)
        .ok()?;
    Some(out)
}

/// Area-average resize (each output pixel is the mean of the input area it covers, partial pixels
/// weighted by coverage), separable, in f32.
fn area_resize(px: &[u8], w: usize, h: usize, c: usize, ow: usize, oh: usize) -> Vec<u8> {
    fn weights(n_in: usize, n_out: usize) -> Vec<(usize, Vec<f32>)> {
        let s = n_in as f64 / n_out as f64;
        (0..n_out)
            .map(|o| {
                let (a, b) = (o as f64 * s, ((o + 1) as f64 * s).min(n_in as f64));
                let first = a.floor() as usize;
                let last = (b.ceil() as usize).min(n_in);
                let ws = (first..last)
                    .map(|i| ((b.min(i as f64 + 1.0) - a.max(i as f64)) / s) as f32)
                    .collect();
                (first, ws)
            })
            .collect()
    }
    let (wx, wy) = (weights(w, ow), weights(h, oh));
    let mut rows = vec![0f32; h * ow * c];
    for y in 0..h {
        for (ox, (first, ws)) in wx.iter().enumerate() {
            for ch in 0..c {
                let mut acc = 0f32;
                for (k, &wk) in ws.iter().enumerate() {
                    acc += wk * px[(y * w + first + k) * c + ch] as f32;
                }
                rows[(y * ow + ox) * c + ch] = acc;
            }
        }
    }
    let mut out = vec![0u8; oh * ow * c];
    for (oy, (first, ws)) in wy.iter().enumerate() {
        for i in 0..ow * c {
            let mut acc = 0f32;
            for (k, &wk) in ws.iter().enumerate() {
                acc += wk * rows[(first + k) * ow * c + i];
            }
            out[oy * ow * c + i] = (acc + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// `loader --pack FILE`'s samples: the pack memory-mapped once and checked
/// ([`PackView::parse`]); reading a sample is a copy out of the map into the worker's buffer (no
/// `open`, `read` or `close` per image; the page cache serves every worker).
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

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let px: Vec<u8> = (0..w as usize * h as usize * 3)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(&px, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    #[test]
    fn round_trip_keeps_order_labels_names_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for (class, files) in [("b_cls", 2usize), ("a_cls", 3)] {
            std::fs::create_dir_all(root.join(class)).unwrap();
            for i in 0..files {
                std::fs::write(
                    root.join(class).join(format!("{i}.JPEG")),
                    jpeg(20 + i as u16, 10),
                )
                .unwrap();
            }
        }
        let folder = ImageFolder::scan(&root).unwrap();
        let out = dir.path().join("set.pack");
        let s = write_pack(
            &folder,
            &out,
            &PackOptions {
                max_side: None,
                quality: 90,
                ..PackOptions::default()
            },
        )
        .unwrap();
        assert_eq!((s.samples, s.classes, s.resized), (5, 2, 0));
        let bytes = std::fs::read(&out).unwrap();
        let view = PackView::parse(&bytes).unwrap();
        assert_eq!(view.len(), folder.samples.len());
        for (i, sample) in folder.samples.iter().enumerate() {
            assert_eq!(view.entry(i).label, sample.label);
            assert_eq!(
                view.data(i),
                std::fs::read(&sample.path).unwrap().as_slice()
            );
            assert!(sample.path.ends_with(view.name(i)), "{}", view.name(i));
        }
        // A cut file is refused with a reason, not read out of bounds.
        assert!(PackView::parse(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        assert!(PackView::parse(b"hello").is_err());
    }

    #[test]
    fn max_side_shrinks_large_jpegs_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("c")).unwrap();
        std::fs::write(root.join("c/big.JPEG"), jpeg(300, 120)).unwrap();
        std::fs::write(root.join("c/small.JPEG"), jpeg(60, 40)).unwrap();
        let folder = ImageFolder::scan(&root).unwrap();
        let out = dir.path().join("set.pack");
        let s = write_pack(
            &folder,
            &out,
            &PackOptions {
                max_side: Some(100),
                quality: 85,
                ..PackOptions::default()
            },
        )
        .unwrap();
        assert_eq!(s.resized, 1);
        let bytes = std::fs::read(&out).unwrap();
        let view = PackView::parse(&bytes).unwrap();
        let big = folder
            .samples
            .iter()
            .position(|s| s.path.ends_with("big.JPEG"))
            .unwrap();
        let mut img = decode::RgbImage::default();
        decode::decode_rgb(view.data(big), decode::DEFAULT_MAX_PIXELS, &mut img).unwrap();
        assert_eq!((img.width, img.height), (100, 40));
        let small = 1 - big;
        assert_eq!(
            view.data(small),
            std::fs::read(&folder.samples[small].path)
                .unwrap()
                .as_slice()
        );
    }

    /// `--decoder` reaches the decode of the images `--max-side` shrinks: zune-jpeg's and
    /// libjpeg-turbo's pixels differ on this 4:2:0 file, so the re-encoded bytes do too.
    #[test]
    fn max_side_decodes_with_the_chosen_decoder() {
        let big = jpeg(300, 120);
        let shrunk: Vec<Vec<u8>> = decode::Decoder::available()
            .into_iter()
            .map(|d| shrink_jpeg(&big, 100, 85, d).expect("shrinks"))
            .collect();
        if shrunk.len() == 2 {
            assert_ne!(shrunk[0], shrunk[1]);
        }
    }

    #[test]
    fn area_resize_keeps_flat_colour() {
        let px = vec![77u8; 10 * 7 * 3];
        assert!(area_resize(&px, 10, 7, 3, 4, 3).iter().all(|&v| v == 77));
    }

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
