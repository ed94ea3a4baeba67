//! A shard's samples, found from its tar headers with WebDataset's grouping, and the cache that
//! keeps them between starts.
//!
//! Grouping (as webdataset's `group_by_keys`): a member `dir/KEY.EXT` belongs to the sample `dir/KEY`
//! (the key ends at the first dot of the base name; the extension is lowercased); consecutive
//! members with the same key form one sample, a key seen again later starts another. A sample's
//! image is its first member whose extension is one of [`IMAGE_EXTENSIONS`]; its label comes from
//! the [`LabelKey`] member. Samples without either, with an empty image, a label that is not a
//! non-negative integer, a second member of the same extension or a truncated member are left out
//! and listed with the reason.

use std::path::{Path, PathBuf};

use crate::folder::IMAGE_EXTENSIONS;
use crate::wds::tar::{members, TarError};

/// Where a sample's label is read: the member with extension `ext`, as an ASCII integer, or the
/// integer at the (dotted) `field` path of that member's JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelKey {
    pub ext: String,
    pub field: Option<String>,
}

impl LabelKey {
    /// `EXT` or `EXT:FIELD` (e.g. `cls`, `json:label`, `json:meta.class`).
    pub fn parse(s: &str) -> anyhow::Result<LabelKey> {
        let (ext, field) = match s.split_once(':') {
            Some((e, f)) => (e, Some(f.to_string())),
            None => (s, None),
        };
        if ext.is_empty() || field.as_deref() == Some("") {
            anyhow::bail!(
                "--label-key {s:?}: expected EXT (e.g. cls) or EXT:FIELD (e.g. json:label)"
            );
        }
        Ok(LabelKey {
            ext: ext.to_ascii_lowercase(),
            field,
        })
    }

    /// The label in a member's bytes.
    pub fn label(&self, bytes: &[u8]) -> Result<u32, String> {
        let number = match &self.field {
            None => {
                let text =
                    std::str::from_utf8(bytes).map_err(|_| "label is not text".to_string())?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(format!("empty .{} member", self.ext));
                }
                text.parse::<u64>()
                    .map_err(|_| format!("label {text:?} is not a non-negative integer"))?
            }
            Some(field) => {
                let json: serde_json::Value = serde_json::from_slice(bytes)
                    .map_err(|e| format!(".{} member is not JSON: {e}", self.ext))?;
                let value = field
                    .split('.')
                    .try_fold(&json, |v, k| v.get(k))
                    .ok_or_else(|| format!("no field {field:?} in the .{} member", self.ext))?;
                value
                    .as_u64()
                    .ok_or_else(|| format!("{field} = {value} is not a non-negative integer"))?
            }
        };
        u32::try_from(number)
            .ok()
            .filter(|&n| n < u32::MAX)
            .ok_or_else(|| format!("label {number} is too large"))
    }
}

/// One usable sample of a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub offset: u64,
    pub len: u64,
    pub label: u32,
}

/// The samples of one shard, and the keys left out with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardIndex {
    pub samples: Vec<Entry>,
    pub skipped: Vec<(String, String)>,
}

/// The sample being gathered.
struct Group {
    key: String,
    exts: Vec<String>,
    image: Option<(u64, u64)>,
    label: Option<Result<u32, String>>,
    problems: Vec<String>,
}

impl Group {
    fn finish(self, out: &mut ShardIndex) {
        let why = if let Some(p) = self.problems.into_iter().next() {
            p
        } else {
            match (self.image, self.label) {
                (None, _) => format!(
                    "no image member (a .{} file); members: {}",
                    IMAGE_EXTENSIONS.join("/."),
                    self.exts.join(", ")
                ),
                (Some((_, 0)), _) => "empty image member".into(),
                (_, None) => "no label member".into(),
                (_, Some(Err(e))) => e,
                (Some((offset, len)), Some(Ok(label))) => {
                    out.samples.push(Entry {
                        key: self.key,
                        offset,
                        len,
                        label,
                    });
                    return;
                }
            }
        };
        out.skipped.push((self.key, why));
    }
}

/// WebDataset's split of a member name into key and extension (`None` for names without a dot in
/// the base name, or a base name starting with one).
fn key_and_ext(name: &str) -> Option<(&str, String)> {
    let base_start = name.rfind('/').map_or(0, |i| i + 1);
    let dot = name[base_start..].find('.')? + base_start;
    (dot > base_start).then(|| (&name[..dot], name[dot + 1..].to_ascii_lowercase()))
}

/// Indexes a whole shard. Errs only when `bytes` is not a tar at all; a corrupt or truncated
/// member later on ends the shard there, listed among the skipped.
pub fn index_shard(bytes: &[u8], label_key: &LabelKey) -> Result<ShardIndex, TarError> {
    let mut out = ShardIndex::default();
    let mut group: Option<Group> = None;
    for member in members(bytes) {
        let m = match member {
            Ok(m) => m,
            Err(e @ TarError::NotTar(_)) => return Err(e),
            Err(e) => {
                let key = match &e {
                    TarError::Truncated { name, .. } => {
                        key_and_ext(name).map_or(name.clone(), |(k, _)| k.to_string())
                    }
                    _ => String::new(),
                };
                match group.as_mut() {
                    Some(g) if g.key == key => g.problems.push(e.to_string()),
                    _ => out.skipped.push((key, e.to_string())),
                }
                break;
            }
        };
        // webdataset passes over `__name__` entries at the top level and names without a key.
        if !m.name.contains('/') && m.name.starts_with("__") && m.name.ends_with("__") {
            continue;
        }
        let Some((key, ext)) = key_and_ext(&m.name) else {
            continue;
        };
        if group.as_ref().is_none_or(|g| g.key != key) {
            if let Some(g) = group.take() {
                g.finish(&mut out);
            }
            group = Some(Group {
                key: key.to_string(),
                exts: Vec::new(),
                image: None,
                label: None,
                problems: Vec::new(),
            });
        }
        let g = group.as_mut().expect("set above");
        if g.exts.contains(&ext) {
            g.problems
                .push(format!("two members named {key}.{ext} (duplicate key)"));
            continue;
        }
        if g.image.is_none() && IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            g.image = Some((m.offset, m.size));
        }
        if ext == label_key.ext {
            let data = &bytes[m.offset as usize..(m.offset + m.size) as usize];
            g.label = Some(label_key.label(data));
        }
        g.exts.push(ext);
    }
    if let Some(g) = group {
        g.finish(&mut out);
    }
    Ok(out)
}

/// What identifies a shard's contents: its size and modification time (nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: u128,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Stamp {
            size: meta.len(),
            mtime_ns,
        }
    }
}

const CACHE_MAGIC: &[u8; 8] = b"BARLOWWI";
const CACHE_VERSION: u32 = 1;

/// The cache file of a shard list read with `label_key`: named by a hash of both, under
/// `<barlow cache>/wds-index/`.
pub fn cache_path(cache_dir: &Path, paths: &[PathBuf], label_key: &LabelKey) -> PathBuf {
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes.iter().chain([0u8].iter()) {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    };
    eat(label_key.ext.as_bytes());
    eat(label_key.field.as_deref().unwrap_or("").as_bytes());
    for p in paths {
        eat(p.as_os_str().as_encoded_bytes());
    }
    cache_dir.join("wds-index").join(format!("{h:016x}.idx"))
}

/// Serialises `(path, stamp, index)` per shard.
pub fn encode_cache(label_key: &LabelKey, shards: &[(&Path, Stamp, &ShardIndex)]) -> Vec<u8> {
    let mut w = Vec::new();
    let str_ = |w: &mut Vec<u8>, s: &[u8]| {
        w.extend((s.len() as u64).to_le_bytes());
        w.extend_from_slice(s);
    };
    w.extend_from_slice(CACHE_MAGIC);
    w.extend(CACHE_VERSION.to_le_bytes());
    str_(&mut w, format!("{label_key:?}").as_bytes());
    w.extend((shards.len() as u64).to_le_bytes());
    for (path, stamp, index) in shards {
        str_(&mut w, path.as_os_str().as_encoded_bytes());
        w.extend(stamp.size.to_le_bytes());
        w.extend(stamp.mtime_ns.to_le_bytes());
        w.extend((index.samples.len() as u64).to_le_bytes());
        for e in &index.samples {
            str_(&mut w, e.key.as_bytes());
            w.extend(e.offset.to_le_bytes());
            w.extend(e.len.to_le_bytes());
            w.extend(e.label.to_le_bytes());
        }
        w.extend((index.skipped.len() as u64).to_le_bytes());
        for (key, why) in &index.skipped {
            str_(&mut w, key.as_bytes());
            str_(&mut w, why.as_bytes());
        }
    }
    w
}

/// A bounds-checked reader of cache bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = usize::try_from(self.u64()?).ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// The shards of a cache file, as `(path, stamp, index)`; `None` if it is not one this build wrote
/// for `label_key`.
pub fn decode_cache(
    bytes: &[u8],
    label_key: &LabelKey,
) -> Option<Vec<(PathBuf, Stamp, ShardIndex)>> {
    let mut r = Reader(bytes);
    if r.take(8)? != CACHE_MAGIC || r.take(4)? != CACHE_VERSION.to_le_bytes() {
        return None;
    }
    if r.str()? != format!("{label_key:?}") {
        return None;
    }
    let shards = r.u64()?;
    let mut out = Vec::new();
    for _ in 0..shards {
        let path = PathBuf::from(r.str()?);
        let size = r.u64()?;
        let mtime_ns = u128::from_le_bytes(r.take(16)?.try_into().ok()?);
        let mut index = ShardIndex::default();
        for _ in 0..r.u64()? {
            let key = r.str()?;
            let (offset, len) = (r.u64()?, r.u64()?);
            let label = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
            // Never trust an offset beyond the shard's recorded size.
            if offset.checked_add(len)? > size {
                return None;
            }
            index.samples.push(Entry {
                key,
                offset,
                len,
                label,
            });
        }
        for _ in 0..r.u64()? {
            index.skipped.push((r.str()?, r.str()?));
        }
        out.push((path, Stamp { size, mtime_ns }, index));
    }
    r.0.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wds::tar::build::{file, finish, push, Long};

    fn cls() -> LabelKey {
        LabelKey::parse("cls").unwrap()
    }

    fn keys(ix: &ShardIndex) -> Vec<(&str, u32)> {
        ix.samples
            .iter()
            .map(|e| (e.key.as_str(), e.label))
            .collect()
    }

    fn reason<'a>(ix: &'a ShardIndex, key: &str) -> &'a str {
        &ix.skipped
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{key} not skipped: {ix:?}"))
            .1
    }

    #[test]
    fn groups_images_and_labels_like_webdataset() {
        let mut tar = Vec::new();
        let long = format!("{}/k1", "d".repeat(150));
        for (name, data, how) in [
            ("a/k0.JPG", &b"img0"[..], Long::No),
            ("a/k0.cls", b"3\n", Long::No),
            ("a/k0.json", b"{\"label\": 5}", Long::No),
            (&*format!("{long}.png"), b"img1", Long::Pax),
            (&*format!("{long}.cls"), b"1", Long::Gnu),
            ("k2.txt", b"no image", Long::No),
            ("k2.cls", b"0", Long::No),
            ("k3.jpg", b"", Long::No),
            ("k3.cls", b"0", Long::No),
            ("k4.jpg", b"img4", Long::No),
            ("k5.jpg", b"img5", Long::No),
            ("k5.cls", b"-1", Long::No),
            ("k6.jpg", b"img6", Long::No),
            ("k6.jpg", b"again", Long::No),
            ("k6.cls", b"0", Long::No),
            ("__meta__", b"x", Long::No),
            ("noext", b"x", Long::No),
            ("k7.seg.png", b"seg", Long::No),
            ("k7.webp", b"img7", Long::No),
            ("k7.cls", b" 2 ", Long::No),
            ("a/k0.jpg", b"again", Long::No),
            ("a/k0.cls", b"4", Long::No),
        ] {
            file(&mut tar, name, data, how);
        }
        push(&mut tar, b"dir/", b'5', b"");
        finish(&mut tar);
        let ix = index_shard(&tar, &cls()).unwrap();
        assert_eq!(
            keys(&ix),
            [("a/k0", 3), (long.as_str(), 1), ("k7", 2), ("a/k0", 4)]
        );
        let k7 = &ix.samples[2];
        assert_eq!(
            &tar[k7.offset as usize..(k7.offset + k7.len) as usize],
            b"img7"
        );
        assert!(reason(&ix, "k2").contains("no image"));
        assert!(reason(&ix, "k3").contains("empty image"));
        assert!(reason(&ix, "k4").contains("no label"));
        assert!(reason(&ix, "k5").contains("not a non-negative integer"));
        assert!(reason(&ix, "k6").contains("duplicate key"));
        assert_eq!(ix.skipped.len(), 5);

        let json = LabelKey::parse("json:label").unwrap();
        let ix = index_shard(&tar, &json).unwrap();
        assert_eq!(keys(&ix), [("a/k0", 5)]);
        assert!(reason(&ix, "k7").contains("no label"));
        assert!(LabelKey::parse("json:").is_err());
        assert_eq!(
            LabelKey::parse("JSON:m.c")
                .unwrap()
                .label(br#"{"m": {"c": 9}}"#),
            Ok(9)
        );
    }

    #[test]
    fn truncated_last_member_and_not_a_tar() {
        let mut tar = Vec::new();
        file(&mut tar, "k0.jpg", b"img", Long::No);
        file(&mut tar, "k0.cls", b"0", Long::No);
        file(&mut tar, "k1.cls", b"1", Long::No);
        file(&mut tar, "k1.jpg", &[9u8; 4000], Long::No);
        let cut = &tar[..tar.len() - 1000];
        let ix = index_shard(cut, &cls()).unwrap();
        assert_eq!(keys(&ix), [("k0", 0)]);
        assert!(
            reason(&ix, "k1").contains("truncated member k1.jpg"),
            "{ix:?}"
        );
        assert!(matches!(
            index_shard(b"<html>", &cls()),
            Err(TarError::NotTar(_))
        ));
    }

    /// A member beyond 10 GB in a sparse file: found, and its bytes read through a map.
    #[test]
    fn member_after_a_ten_gigabyte_offset() {
        use std::io::{Seek, SeekFrom, Write};
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("big.tar");
        let mut f = std::fs::File::create(&path).unwrap();
        let gap: u64 = 10 << 30;
        // A member holding 10 GiB of zeros (a hole), then a sample.
        f.write_all(&crate::wds::tar::build::header(b"pad.bin", gap, b'0'))
            .unwrap();
        f.seek(SeekFrom::Start(512 + gap)).unwrap();
        let mut rest = Vec::new();
        file(&mut rest, "far.jpg", b"far image", Long::No);
        file(&mut rest, "far.cls", b"7", Long::No);
        finish(&mut rest);
        f.write_all(&rest).unwrap();
        drop(f);
        let map = unsafe { memmap2::Mmap::map(&std::fs::File::open(&path).unwrap()) }.unwrap();
        let ix = index_shard(&map, &cls()).unwrap();
        assert_eq!(keys(&ix), [("far", 7)]);
        let e = &ix.samples[0];
        assert!(e.offset > gap);
        assert_eq!(
            &map[e.offset as usize..(e.offset + e.len) as usize],
            b"far image"
        );
        assert!(reason(&ix, "pad").contains("no image"));
    }

    #[test]
    fn cache_round_trips_and_refuses_junk() {
        let ix = ShardIndex {
            samples: vec![Entry {
                key: "k".into(),
                offset: 512,
                len: 3,
                label: 2,
            }],
            skipped: vec![("x".into(), "why".into())],
        };
        let stamp = Stamp {
            size: 4096,
            mtime_ns: 123,
        };
        let bytes = encode_cache(&cls(), &[(Path::new("/s.tar"), stamp, &ix)]);
        let back = decode_cache(&bytes, &cls()).unwrap();
        assert_eq!(back, vec![(PathBuf::from("/s.tar"), stamp, ix)]);
        let json = LabelKey::parse("json:label").unwrap();
        assert!(decode_cache(&bytes, &json).is_none());
        for n in 0..bytes.len() {
            assert!(decode_cache(&bytes[..n], &cls()).is_none());
        }
    }
}
