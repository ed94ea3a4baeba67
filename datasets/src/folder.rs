//! ImageNet-style folder scanning, like torchvision's `ImageFolder`.
//!
//! A dataset root holds one subdirectory per class (`root/<class>/<image>.JPEG`). Classes are the
//! immediate subdirectories sorted by name (byte order), labelled `0..K`; samples are the image
//! files found recursively under each class directory (symlinks followed), sorted by path within
//! a class and concatenated in label order.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rayon::prelude::*;

/// File extensions (without the dot, compared case-insensitively) that count as images; the same
/// list as torchvision's `IMG_EXTENSIONS`.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

/// Deepest directory nesting followed below a class directory (guards against symlink loops on
/// platforms where loops cannot be detected by inode).
const MAX_DEPTH: usize = 64;

/// One image file and its class label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Path of the image file (root joined with the relative path, as found).
    pub path: PathBuf,
    /// Index into [`ImageFolder::classes`].
    pub label: u32,
}

/// The result of scanning a dataset root laid out as `root/<class>/<image>`.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The scanned root directory.
    pub root: PathBuf,
    /// Class names (directory names, lossily converted if not UTF-8), index = label.
    pub classes: Vec<String>,
    /// All samples, grouped by label in ascending order and sorted by path within a class.
    pub samples: Vec<Sample>,
    /// Entries that could not be read (unreadable directories, broken symlinks) with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Returns true if `path` has one of [`IMAGE_EXTENSIONS`] (case-insensitive). Never allocates.
pub fn has_image_extension(path: &Path) -> bool {
    match path.extension() {
        Some(ext) => {
            let ext = ext.as_encoded_bytes();
            IMAGE_EXTENSIONS
                .iter()
                .any(|e| e.as_bytes().eq_ignore_ascii_case(ext))
        }
        None => false,
    }
}

impl ImageFolder {
    /// Scans `root` for `root/<class>/**/<image>` files.
    ///
    /// Errors if `root` is missing or not a directory, has no class subdirectories, or holds no
    /// image files at all. Class folders without images are kept (their label is still used).
    /// Unreadable directories and broken symlinks are recorded in [`ImageFolder::skipped`].
    pub fn scan(root: &Path) -> anyhow::Result<ImageFolder> {
        let meta = match fs::metadata(root) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
                "dataset root {} does not exist: pass a directory laid out as root/<class>/<image>.JPEG \
                 (or create the demo with `datasets demo --out DIR`)",
                root.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot access dataset root {}", root.display()))
            }
        };
        if !meta.is_dir() {
            bail!(
                "dataset root {} is not a directory: pass the directory that contains one folder per class \
                 (root/<class>/<image>.JPEG)",
                root.display()
            );
        }

        let mut skipped = Vec::new();
        let mut class_dirs: Vec<PathBuf> = Vec::new();
        let entries = fs::read_dir(root).with_context(|| {
            format!(
                "cannot list dataset root {} (check its permissions)",
                root.display()
            )
        })?;
        for entry in entries {
            let entry = entry.with_context(|| format!("error while listing {}", root.display()))?;
            let path = entry.path();
            match entry_kind(&entry, &path) {
                Kind::Dir => class_dirs.push(path),
                Kind::Broken(reason) => skipped.push((path, reason)),
                Kind::File | Kind::Other => {}
            }
        }
        if class_dirs.is_empty() {
            let tars = fs::read_dir(root)
                .map(|d| {
                    d.flatten()
                        .filter(|e| {
                            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
                            name.ends_with(".tar")
                                || name.ends_with(".tar.gz")
                                || name.ends_with(".tgz")
                        })
                        .count()
                })
                .unwrap_or(0);
            if tars > 0 {
                bail!(
                    "{} holds {tars} tar files and no class folders: to read WebDataset shards, pass --wds {} \
                     (or a brace pattern such as --wds '{}/train-{{0000..0099}}.tar') instead of --dir",
                    root.display(),
                    root.display(),
                    root.display()
                );
            }
            bail!(
                "no class subdirectories in {}: expected root/<class>/<image>.JPEG (one folder per class)",
                root.display()
            );
        }
        // Byte order of the file name, like Python's sorted() on names.
        class_dirs.sort_unstable_by(|a, b| a.file_name().cmp(&b.file_name()));
        let classes: Vec<String> = class_dirs
            .iter()
            .map(|d| {
                d.file_name()
                    .unwrap_or(OsStr::new(""))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        if classes.len() > u32::MAX as usize {
            bail!("too many classes in {}", root.display());
        }

        let per_class: Vec<ClassScan> = class_dirs.par_iter().map(|dir| scan_class(dir)).collect();

        let total: usize = per_class.iter().map(|(files, _)| files.len()).sum();
        let mut samples = Vec::with_capacity(total);
        for (label, (files, class_skipped)) in per_class.into_iter().enumerate() {
            samples.extend(files.into_iter().map(|path| Sample {
                path,
                label: label as u32,
            }));
            skipped.extend(class_skipped);
        }
        skipped.sort_by(|a, b| a.0.cmp(&b.0));

        if samples.is_empty() {
            bail!(
                "no image files under {} ({} class folders found, but none holds a file with extension {}): \
                 expected root/<class>/<image>.JPEG",
                root.display(),
                classes.len(),
                IMAGE_EXTENSIONS.join("/")
            );
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes,
            samples,
            skipped,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True if there are no samples (never the case for a successful [`ImageFolder::scan`]).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Number of samples per class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.classes.len()];
        for s in &self.samples {
            counts[s.label as usize] += 1;
        }
        counts
    }
}

/// Image files and skipped entries found under one class directory.
type ClassScan = (Vec<PathBuf>, Vec<(PathBuf, String)>);

/// What a directory entry is, after following symlinks.
enum Kind {
    File,
    Dir,
    Other,
    Broken(String),
}

/// Classifies a directory entry; uses the cheap `d_type` and only stats symlinks.
fn entry_kind(entry: &fs::DirEntry, path: &Path) -> Kind {
    let ft = match entry.file_type() {
        Ok(ft) => ft,
        Err(e) => return Kind::Broken(format!("cannot read file type: {e}")),
    };
    let ft = if ft.is_symlink() {
        match fs::metadata(path) {
            Ok(m) => m.file_type(),
            Err(e) => return Kind::Broken(format!("broken symlink: {e}")),
        }
    } else {
        ft
    };
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    }
}

/// Identity of a directory, for symlink-loop detection.
#[cfg(unix)]
fn dir_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn dir_id(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// Recursively collects image files under one class directory, sorted by path.
fn scan_class(dir: &Path) -> ClassScan {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut ancestors = Vec::new();
    if let Some(id) = dir_id(dir) {
        ancestors.push(id);
    }
    walk(dir, 0, &mut ancestors, &mut files, &mut skipped);
    files.sort_unstable();
    (files, skipped)
}

fn walk(
    dir: &Path,
    depth: usize,
    ancestors: &mut Vec<(u64, u64)>,
    files: &mut Vec<PathBuf>,
    skipped: &mut Vec<(PathBuf, String)>,
) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            skipped.push((dir.to_path_buf(), format!("cannot read directory: {e}")));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                skipped.push((
                    dir.to_path_buf(),
                    format!("error while listing directory: {e}"),
                ));
                break;
            }
        };
        let path = entry.path();
        match entry_kind(&entry, &path) {
            Kind::File => {
                if has_image_extension(&path) {
                    files.push(path);
                }
            }
            Kind::Dir => {
                if depth + 1 >= MAX_DEPTH {
                    skipped.push((
                        path,
                        format!("directory nested deeper than {MAX_DEPTH} levels"),
                    ));
                    continue;
                }
                // One stat per directory (not per file) to detect symlink loops.
                match dir_id(&path) {
                    Some(id) if ancestors.contains(&id) => {
                        skipped.push((
                            path,
                            "symlink loop (points to one of its parent directories)".into(),
                        ));
                    }
                    Some(id) => {
                        ancestors.push(id);
                        walk(&path, depth + 1, ancestors, files, skipped);
                        ancestors.pop();
                    }
                    None => walk(&path, depth + 1, ancestors, files, skipped),
                }
            }
            Kind::Broken(reason) => skipped.push((path, reason)),
            Kind::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        File::create(p).unwrap();
    }

    fn rel(folder: &ImageFolder) -> Vec<(PathBuf, u32)> {
        folder
            .samples
            .iter()
            .map(|s| {
                (
                    s.path.strip_prefix(&folder.root).unwrap().to_path_buf(),
                    s.label,
                )
            })
            .collect()
    }

    #[test]
    fn extensions_are_case_insensitive() {
        for ok in [
            "a.jpg", "a.JPEG", "a.Png", "x/y.webp", "a.TIFF", "a.b.pgm", "a.ppm", "a.bmp", "a.tif",
        ] {
            assert!(has_image_extension(Path::new(ok)), "{ok}");
        }
        for bad in ["a.txt", "jpg", "a.jpg.txt", "a.", "a.jp", ".jpg"] {
            assert!(!has_image_extension(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn scan_labels_and_ordering() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // Classes created out of order; `c` stays empty.
        touch(&root.join("b/2.png"));
        touch(&root.join("b/10.JPEG"));
        touch(&root.join("b/1.jpg"));
        touch(&root.join("b/notes.txt"));
        touch(&root.join("b/sub/deep/3.Jpeg"));
        touch(&root.join("a/z.webp"));
        touch(&root.join("a/A.TIF"));
        touch(&root.join("a/noext"));
        fs::create_dir_all(root.join("c")).unwrap();
        touch(&root.join("README.txt")); // files at the root are ignored
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            touch(&root.join("a").join(OsStr::from_bytes(b"bad\xff.JPEG")));
            std::os::unix::fs::symlink(root.join("does-not-exist.jpg"), root.join("b/broken.jpg"))
                .unwrap();
            // A symlink to a real file is followed.
            std::os::unix::fs::symlink(root.join("b/1.jpg"), root.join("a/link.jpg")).unwrap();
            // A symlinked directory pointing back up is reported, not followed forever.
            std::os::unix::fs::symlink(root.join("b"), root.join("b/sub/loop")).unwrap();
            std::os::unix::fs::symlink(root.join("b/sub"), root.join("b/sub/deep/up")).unwrap();
            // A dangling link at the root might have been a class folder: reported too.
            std::os::unix::fs::symlink(root.join("gone"), root.join("dangling")).unwrap();
        }

        let f = ImageFolder::scan(root).unwrap();
        assert_eq!(f.classes, vec!["a", "b", "c"]);
        assert_eq!(f.root, root);

        let mut expected: Vec<(PathBuf, u32)> = Vec::new();
        expected.push(("a/A.TIF".into(), 0));
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            expected.push((Path::new("a").join(OsStr::from_bytes(b"bad\xff.JPEG")), 0));
            expected.push(("a/link.jpg".into(), 0));
        }
        expected.push(("a/z.webp".into(), 0));
        // Byte order: '.' (0x2e) sorts before '0' (0x30), so "1.jpg" comes before "10.JPEG".
        expected.push(("b/1.jpg".into(), 1));
        expected.push(("b/10.JPEG".into(), 1));
        expected.push(("b/2.png".into(), 1));
        expected.push(("b/sub/deep/3.Jpeg".into(), 1));
        assert_eq!(rel(&f), expected);
        assert_eq!(f.len(), expected.len());
        assert!(!f.is_empty());
        assert_eq!(
            f.class_counts(),
            vec![expected.iter().filter(|e| e.1 == 0).count(), 4, 0]
        );

        #[cfg(unix)]
        {
            let skipped: Vec<(PathBuf, &str)> = f
                .skipped
                .iter()
                .map(|(p, r)| (p.strip_prefix(root).unwrap().to_path_buf(), r.as_str()))
                .collect();
            let expected_skipped = [
                ("b/broken.jpg", "broken symlink"),
                ("b/sub/deep/up", "symlink loop"),
                ("b/sub/loop", "symlink loop"),
                ("dangling", "broken symlink"),
            ];
            assert_eq!(skipped.len(), expected_skipped.len(), "{skipped:?}");
            for ((path, reason), (want_path, want_reason)) in skipped.iter().zip(expected_skipped) {
                assert_eq!(path, Path::new(want_path));
                assert!(reason.contains(want_reason), "{path:?}: {reason}");
            }
        }
    }

    #[test]
    fn class_order_is_byte_order() {
        let tmp = tempfile::tempdir().unwrap();
        for c in ["b", "B", "a_1", "a", "a.x", "Z", "10", "9"] {
            touch(&tmp.path().join(c).join("x.jpg"));
        }
        let f = ImageFolder::scan(tmp.path()).unwrap();
        assert_eq!(f.classes, vec!["10", "9", "B", "Z", "a", "a.x", "a_1", "b"]);
        let labels: Vec<u32> = f.samples.iter().map(|s| s.label).collect();
        assert_eq!(labels, (0..8).collect::<Vec<u32>>());
        for s in &f.samples {
            assert_eq!(
                s.path.parent().unwrap().file_name().unwrap(),
                f.classes[s.label as usize].as_str()
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_class_dir_and_unreadable_subdir() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        touch(&elsewhere.path().join("img.jpg"));
        fs::create_dir_all(tmp.path().join("a")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), tmp.path().join("linked")).unwrap();
        touch(&tmp.path().join("a/ok.jpg"));
        let locked = tmp.path().join("a/locked");
        touch(&locked.join("hidden.jpg"));
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        let root_can_read = fs::read_dir(&locked).is_ok(); // e.g. running as root
        let f = ImageFolder::scan(tmp.path());
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        let f = f.unwrap();
        assert_eq!(f.classes, vec!["a", "linked"]);
        assert_eq!(
            f.samples.last().unwrap().path,
            tmp.path().join("linked/img.jpg")
        );
        assert_eq!(f.samples.last().unwrap().label, 1);
        if root_can_read {
            assert!(f.skipped.is_empty());
            assert_eq!(f.len(), 3);
        } else {
            assert_eq!(f.len(), 2);
            assert_eq!(f.skipped.len(), 1);
            assert_eq!(f.skipped[0].0, locked);
            assert!(f.skipped[0].1.contains("cannot read directory"));
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let e = format!("{:#}", ImageFolder::scan(&missing).unwrap_err());
        assert!(e.contains("does not exist") && e.contains("nope"), "{e}");

        let file = tmp.path().join("file.jpg");
        touch(&file);
        let e = format!("{:#}", ImageFolder::scan(&file).unwrap_err());
        assert!(e.contains("not a directory"), "{e}");

        // Images directly under the root: no class folders.
        let flat = tmp.path().join("flat");
        touch(&flat.join("a.jpg"));
        let e = format!("{:#}", ImageFolder::scan(&flat).unwrap_err());
        assert!(
            e.contains("no class subdirectories") && e.contains("root/<class>/<image>.JPEG"),
            "{e}"
        );

        // Only shards: the message names --wds.
        let shards = tmp.path().join("shards");
        touch(&shards.join("train-0000.tar"));
        let e = format!("{:#}", ImageFolder::scan(&shards).unwrap_err());
        assert!(e.contains("--wds") && e.contains("1 tar files"), "{e}");

        // Class folders but no images.
        let empty = tmp.path().join("empty");
        touch(&empty.join("a/notes.txt"));
        fs::create_dir_all(empty.join("b")).unwrap();
        let e = format!("{:#}", ImageFolder::scan(&empty).unwrap_err());
        assert!(
            e.contains("no image files") && e.contains("2 class folders"),
            "{e}"
        );
    }
}
