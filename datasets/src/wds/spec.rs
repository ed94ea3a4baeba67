//! Which shards a `--wds SPEC` names: a brace pattern (`/data/train-{0000..1023}.tar`, with `{a,b}`
//! lists too, as webdataset's `braceexpand` reads it), several joined by `::`, a folder of `.tar`
//! files (sorted by name), a single `.tar`, or a text file listing one shard path per line
//! (relative paths from the list's folder, `#` comments). Compressed and remote shards are refused
//! with the command that makes a plain local tar of them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Endings of compressed tars, each with the command that decompresses one.
const COMPRESSED: &[(&str, &str)] = &[
    (".tar.gz", "gunzip -k SHARD"),
    (".tgz", "gunzip -k SHARD (then rename .tar)"),
    (".tar.zst", "zstd -d SHARD"),
    (".tar.bz2", "bunzip2 -k SHARD"),
    (".tar.xz", "unxz -k SHARD"),
];

/// The shard paths of `spec`, in the order samples are read.
pub fn shard_paths(spec: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for part in spec.split("::").filter(|p| !p.is_empty()) {
        if let Some(scheme) = ["pipe:", "http://", "https://", "s3://", "gs://"]
            .iter()
            .find(|s| part.starts_with(*s))
        {
            bail!(
                "{part}: {scheme} shards are streams, not files barlow can map; copy the shards to a local disk \
                 (e.g. `aws s3 sync` / `gsutil -m cp`) and pass their local paths"
            );
        }
        if part.contains('{') {
            paths.extend(expand_braces(part)?.into_iter().map(PathBuf::from));
            continue;
        }
        let path = Path::new(part);
        if path.is_dir() {
            paths.extend(folder_shards(path)?);
        } else if is_tar_name(path) || compressed_command(path).is_some() {
            paths.push(path.to_path_buf());
        } else if path.is_file() {
            paths.extend(list_file(path)?);
        } else {
            bail!("--wds {part}: no such shard, folder or list file");
        }
    }
    if paths.is_empty() {
        bail!("--wds {spec} names no shards");
    }
    for p in &paths {
        if let Some(cmd) = compressed_command(p) {
            bail!(
                "{}: compressed shards cannot be read at random; decompress each one first: `{}` \
                 (all at once: `for f in DIR/*.tar.gz; do gunzip -k \"$f\"; done`), then pass the .tar files",
                p.display(),
                cmd.replace("SHARD", &p.display().to_string())
            );
        }
    }
    Ok(paths)
}

fn is_tar_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tar"))
}

/// The decompressing command for a compressed tar's name (SHARD stands for the path).
pub fn compressed_command(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    COMPRESSED
        .iter()
        .find(|(end, _)| name.ends_with(end))
        .map(|(_, cmd)| *cmd)
}

/// The `.tar` files of a folder (not below it), sorted by name.
fn folder_shards(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if is_tar_name(&path) || compressed_command(&path).is_some() {
            out.push(path);
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("{} holds no .tar shards", dir.display());
    }
    Ok(out)
}

/// A text file with one shard path per line.
fn list_file(list: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let bytes = std::fs::read(list).with_context(|| format!("reading {}", list.display()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        anyhow::anyhow!(
            "{} is neither a .tar shard, a folder nor a text file listing shard paths",
            list.display()
        )
    })?;
    let base = list.parent().unwrap_or(Path::new(""));
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| base.join(l))
        .collect())
}

/// Expands `{a,b}` lists and `{0..9}` / `{0000..1023}` ranges (zero padding kept, as
/// `braceexpand` does), nested and repeated, left to right.
pub fn expand_braces(pattern: &str) -> anyhow::Result<Vec<String>> {
    let Some(open) = pattern.find('{') else {
        return Ok(vec![pattern.to_string()]);
    };
    // The matching close brace.
    let mut depth = 0;
    let mut close = None;
    for (i, c) in pattern[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(close) = close else {
        bail!("{pattern}: unbalanced '{{'");
    };
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let alternatives = match range(body)? {
        Some(r) => r,
        None => split_top_level(body)
            .into_iter()
            .map(expand_braces)
            .collect::<anyhow::Result<Vec<_>>>()?
            .concat(),
    };
    let tails = expand_braces(tail)?;
    let mut out = Vec::with_capacity(alternatives.len() * tails.len());
    for a in &alternatives {
        for t in &tails {
            out.push(format!("{head}{a}{t}"));
        }
    }
    if out.len() > 10_000_000 {
        bail!("{pattern} expands to over ten million shards");
    }
    Ok(out)
}

/// `a..b` as numbers (padded to the wider of the two when either has a leading zero).
fn range(body: &str) -> anyhow::Result<Option<Vec<String>>> {
    let Some((a, b)) = body.split_once("..") else {
        return Ok(None);
    };
    let (Ok(x), Ok(y)) = (a.parse::<u64>(), b.parse::<u64>()) else {
        return Ok(None);
    };
    if x.abs_diff(y) > 10_000_000 {
        bail!("{{{body}}}: range too large");
    }
    let width = if a.starts_with('0') || b.starts_with('0') {
        a.len().max(b.len())
    } else {
        0
    };
    let values: Vec<u64> = if x <= y {
        (x..=y).collect()
    } else {
        (y..=x).rev().collect()
    };
    Ok(Some(
        values.into_iter().map(|v| format!("{v:0width$}")).collect(),
    ))
}

/// Splits at commas outside nested braces.
fn split_top_level(body: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0, Vec::new());
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&body[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_expand_like_braceexpand() {
        assert_eq!(
            expand_braces("/d/s-{0008..0011}.tar").unwrap(),
            [
                "/d/s-0008.tar",
                "/d/s-0009.tar",
                "/d/s-0010.tar",
                "/d/s-0011.tar"
            ]
        );
        assert_eq!(
            expand_braces("{a,b{1..2}}-{x,y}").unwrap(),
            ["a-x", "a-y", "b1-x", "b1-y", "b2-x", "b2-y"]
        );
        assert_eq!(expand_braces("{3..1}").unwrap(), ["3", "2", "1"]);
        assert_eq!(expand_braces("plain").unwrap(), ["plain"]);
        assert!(expand_braces("a{b").is_err());
        assert!(expand_braces("{0..99999999999}").is_err());
    }

    #[test]
    fn folders_lists_and_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for n in ["b.tar", "a.tar", "notes.txt"] {
            std::fs::write(d.join(n), b"").unwrap();
        }
        let got = shard_paths(d.to_str().unwrap()).unwrap();
        assert_eq!(got, [d.join("a.tar"), d.join("b.tar")]);
        std::fs::write(d.join("list.txt"), "# shards\nb.tar\n\na.tar\n").unwrap();
        let got = shard_paths(d.join("list.txt").to_str().unwrap()).unwrap();
        assert_eq!(got, [d.join("b.tar"), d.join("a.tar")]);
        let joined = format!(
            "{}::{}",
            d.join("a.tar").display(),
            d.join("b.tar").display()
        );
        assert_eq!(shard_paths(&joined).unwrap().len(), 2);

        let e = shard_paths("/x/s-{0..3}.tar.gz").unwrap_err().to_string();
        assert!(e.contains("gunzip -k /x/s-0.tar.gz"), "{e}");
        std::fs::write(d.join("c.tar.gz"), b"").unwrap();
        let e = shard_paths(d.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("c.tar.gz") && e.contains("gunzip"), "{e}");
        assert!(shard_paths("pipe:curl x")
            .unwrap_err()
            .to_string()
            .contains("local disk"));
        assert!(shard_paths(d.join("missing").to_str().unwrap()).is_err());
    }
}
