//! Tar headers read in place (ustar, GNU long names, pax `path` and `size`), for random access to
//! WebDataset shards: [`members`] walks the 512-byte headers of a mapped tar and yields each regular
//! file's name and where its bytes lie, never copying them and never reading past the end.

const BLOCK: usize = 512;

/// A regular file inside a tar: its name and the byte range of its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// Why a walk over tar headers stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarError {
    /// The first block is not a tar header (so the file is not a tar).
    NotTar(String),
    /// A header past the first one is corrupt: the members before it are still good.
    BadHeader { offset: u64, why: String },
    /// A member's contents run past the end of the file.
    Truncated {
        name: String,
        offset: u64,
        size: u64,
        file_len: u64,
    },
}

impl std::fmt::Display for TarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TarError::NotTar(why) => write!(f, "not a tar file ({why})"),
            TarError::BadHeader { offset, why } => {
                write!(f, "corrupt tar header at byte {offset} ({why})")
            }
            TarError::Truncated {
                name,
                offset,
                size,
                file_len,
            } => write!(
                f,
                "truncated member {name}: {size} bytes from byte {offset}, but the file ends at byte {file_len}"
            ),
        }
    }
}

impl std::error::Error for TarError {}

/// Iterates over the regular files of the tar `bytes` (see [`Members`]).
pub fn members(bytes: &[u8]) -> Members<'_> {
    Members {
        bytes,
        at: 0,
        long_name: None,
        pax_name: None,
        pax_size: None,
        done: false,
    }
}

/// The walk of [`members`]: `Ok` per regular file in tar order, then at most one `Err` after which
/// it ends. Directories, links and other entries are passed over.
pub struct Members<'a> {
    bytes: &'a [u8],
    at: usize,
    long_name: Option<String>,
    pax_name: Option<String>,
    pax_size: Option<u64>,
    done: bool,
}

impl Iterator for Members<'_> {
    type Item = Result<Member, TarError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.step() {
                Ok(Some(m)) => return Some(Ok(m)),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl Members<'_> {
    /// Reads one header: a member, nothing (a non-file entry or a name record), or the end.
    fn step(&mut self) -> Result<Option<Member>, TarError> {
        let first = self.at == 0;
        let bad = |at: usize, why: String| {
            if first {
                TarError::NotTar(why)
            } else {
                TarError::BadHeader {
                    offset: at as u64,
                    why,
                }
            }
        };
        let Some(h) = self.bytes.get(self.at..self.at + BLOCK) else {
            self.done = true;
            // A missing end-of-archive marker is tolerated (as GNU tar and Python do).
            return if first {
                Err(bad(0, "shorter than one 512-byte header".into()))
            } else {
                Ok(None)
            };
        };
        if h.iter().all(|&b| b == 0) {
            self.done = true;
            return if first {
                Err(bad(0, "starts with an empty block".into()))
            } else {
                Ok(None)
            };
        }
        check_checksum(h).map_err(|why| bad(self.at, why))?;
        let size = match self.pax_size.take() {
            Some(s) => s,
            None => {
                parse_number(&h[124..136]).ok_or_else(|| bad(self.at, "bad size field".into()))?
            }
        };
        let data = self.at + BLOCK;
        let file_len = self.bytes.len() as u64;
        let end = (data as u64).checked_add(size).filter(|&e| e <= file_len);
        let kind = h[156];
        let name = || {
            let name = cstr(&h[0..100]);
            let prefix = cstr(&h[345..500]);
            if &h[257..263] == b"ustar\0" && !prefix.is_empty() {
                format!("{prefix}/{name}")
            } else {
                name
            }
        };
        let Some(end) = end else {
            let name = self
                .long_name
                .take()
                .or(self.pax_name.take())
                .unwrap_or_else(name);
            return Err(TarError::Truncated {
                name,
                offset: data as u64,
                size,
                file_len,
            });
        };
        let contents = &self.bytes[data..end as usize];
        self.at = (end as usize).div_ceil(BLOCK) * BLOCK;
        match kind {
            b'L' => self.long_name = Some(cstr(contents)),
            b'x' => {
                let (path, size) = parse_pax(contents);
                self.pax_name = path.or(self.pax_name.take());
                self.pax_size = size;
            }
            b'0' | b'\0' | b'7' => {
                // A pax path wins over a GNU long name, which wins over the header's own.
                let long = self.long_name.take();
                let name = self.pax_name.take().or(long).unwrap_or_else(name);
                return Ok(Some(Member {
                    name,
                    offset: data as u64,
                    size,
                }));
            }
            _ => {
                // Global pax headers, directories, links, devices: nothing to read, and any long
                // name read for them is used up.
                if kind != b'g' {
                    self.long_name = None;
                    self.pax_name = None;
                }
            }
        }
        Ok(None)
    }
}

/// The header checksum: the unsigned (or, for old writers, signed) byte sum with the checksum
/// field read as spaces.
fn check_checksum(h: &[u8]) -> Result<(), String> {
    let stored = parse_number(&h[148..156]).ok_or("no checksum")?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += b as i8 as i64;
    }
    if stored == unsigned || stored as i64 == signed {
        Ok(())
    } else {
        Err(format!(
            "header checksum {stored} does not match {unsigned}"
        ))
    }
}

/// A numeric field: octal digits (spaces and NULs around them allowed) or GNU's base-256.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v = (field[0] & 0x3f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let digits = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|b| (b'0'..=b'7').contains(b));
    let mut v = 0u64;
    let mut any = false;
    for b in digits {
        v = v.checked_mul(8)?.checked_add((b - b'0') as u64)?;
        any = true;
    }
    any.then_some(v)
}

/// A NUL-terminated field as text (not UTF-8: lossily).
fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// The `path` and `size` of a pax extended header (records `LEN key=value\n`); malformed records
/// end the parse.
fn parse_pax(mut data: &[u8]) -> (Option<String>, Option<u64>) {
    let (mut path, mut size) = (None, None);
    while let Some(space) = data.iter().position(|&b| b == b' ') {
        let Some(len) = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&l| l > space && l <= data.len())
        else {
            break;
        };
        let record = &data[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            let value = &record[eq + 1..];
            match &record[..eq] {
                b"path" => path = Some(String::from_utf8_lossy(value).into_owned()),
                b"size" => {
                    size = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
                }
                _ => {}
            }
        }
        data = &data[len..];
    }
    (path, size)
}

/// Test and fuzz helpers: tar writing by hand, so that every header form can be made.
pub mod build {
    use super::BLOCK;

    /// A 512-byte header of `kind` for `name` (up to 100 bytes) holding `size` bytes, with a
    /// correct checksum; a `size` over 8 GiB is written in base-256.
    pub fn header(name: &[u8], size: u64, kind: u8) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        let n = name.len().min(100);
        h[..n].copy_from_slice(&name[..n]);
        h[100..107].copy_from_slice(b"0000644");
        if size < 0o77777777777 {
            h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        } else {
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| b as u64).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    /// Appends a member (header, contents, padding) to `tar`.
    pub fn push(tar: &mut Vec<u8>, name: &[u8], kind: u8, data: &[u8]) {
        tar.extend(header(name, data.len() as u64, kind));
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(BLOCK) * BLOCK, 0);
    }

    /// Appends a regular file, through a GNU long-name record or a pax header when asked.
    pub fn file(tar: &mut Vec<u8>, name: &str, data: &[u8], long: Long) {
        match long {
            Long::No => {}
            Long::Gnu => push(tar, b"././@LongLink", b'L', format!("{name}\0").as_bytes()),
            Long::Pax => {
                let body = format!("path={name}\n");
                // The length counts its own digits.
                let mut len = body.len() + 2;
                while format!("{len} {body}").len() != len {
                    len += 1;
                }
                push(
                    tar,
                    b"PaxHeaders/x",
                    b'x',
                    format!("{len} {body}").as_bytes(),
                );
            }
        }
        push(tar, name.as_bytes(), b'0', data);
    }

    /// How [`file`] writes a name.
    #[derive(Clone, Copy, Debug)]
    pub enum Long {
        No,
        Gnu,
        Pax,
    }

    /// The end-of-archive marker (two empty blocks).
    pub fn finish(tar: &mut Vec<u8>) {
        tar.extend([0u8; 2 * BLOCK]);
    }
}

#[cfg(test)]
mod tests {
    use super::build::{file, finish, header, push, Long};
    use super::*;

    fn names(tar: &[u8]) -> Vec<Result<(String, Vec<u8>), TarError>> {
        members(tar)
            .map(|m| {
                m.map(|m| {
                    let data = tar[m.offset as usize..(m.offset + m.size) as usize].to_vec();
                    (m.name, data)
                })
            })
            .collect()
    }

    #[test]
    fn long_names_empty_members_and_other_entries() {
        let long = format!("{}/{}.jpg", "d".repeat(120), "k".repeat(80));
        let mut tar = Vec::new();
        file(&mut tar, "a.jpg", b"AAA", Long::No);
        file(&mut tar, &long, b"gnu", Long::Gnu);
        file(&mut tar, &long.replace(".jpg", ".cls"), b"7", Long::Pax);
        push(&mut tar, b"dir/", b'5', b"");
        push(&mut tar, b"link.jpg", b'2', b"");
        file(&mut tar, "empty.cls", b"", Long::No);
        push(&mut tar, b"PaxGlobal", b'g', b"20 comment=ignored\n");
        file(&mut tar, "b.txt", b"text", Long::No);
        finish(&mut tar);
        let got: Vec<_> = names(&tar).into_iter().map(Result::unwrap).collect();
        let want = [
            ("a.jpg".to_string(), b"AAA".to_vec()),
            (long.clone(), b"gnu".to_vec()),
            (long.replace(".jpg", ".cls"), b"7".to_vec()),
            ("empty.cls".into(), vec![]),
            ("b.txt".into(), b"text".to_vec()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn ustar_prefix_and_missing_end_marker() {
        let mut h = header(b"name.jpg", 2, b'0');
        h[345..351].copy_from_slice(b"prefix");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| b as u64).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut tar = h;
        tar.extend(b"hi");
        tar.resize(1024, 0);
        let got = names(&tar);
        assert_eq!(got, vec![Ok(("prefix/name.jpg".into(), b"hi".to_vec()))]);
    }

    #[test]
    fn truncated_last_member_keeps_the_ones_before() {
        let mut tar = Vec::new();
        file(&mut tar, "a.jpg", b"good", Long::No);
        file(&mut tar, "b.jpg", &[7u8; 3000], Long::No);
        tar.truncate(512 * 3 + 100);
        let got = names(&tar);
        assert_eq!(got[0], Ok(("a.jpg".into(), b"good".to_vec())));
        assert!(
            matches!(&got[1], Err(TarError::Truncated { name, size: 3000, .. }) if name == "b.jpg"),
            "{got:?}"
        );
        assert_eq!(got.len(), 2);
        // Cut inside a header: the walk just ends.
        assert_eq!(names(&tar[..512 * 2 + 100]).len(), 1);
    }

    #[test]
    fn not_a_tar_and_corrupt_headers_are_errors_not_panics() {
        for junk in [&b""[..], b"hello", &[0u8; 1024], &[0xffu8; 2048]] {
            let got = names(junk);
            assert!(matches!(got[..], [Err(TarError::NotTar(_))]), "{got:?}");
        }
        let mut tar = Vec::new();
        file(&mut tar, "a.jpg", b"x", Long::No);
        tar.extend([1u8; 512]);
        let got = names(&tar);
        assert!(
            matches!(got[1], Err(TarError::BadHeader { offset: 1024, .. })),
            "{got:?}"
        );
        // A pax header with nonsense records and a huge size is survived.
        let mut tar = Vec::new();
        push(&mut tar, b"p", b'x', b"99999 path=x\n3 =\nzz");
        push(&mut tar, b"q", b'x', b"27 size=999999999999999999\n");
        file(&mut tar, "z.cls", b"1", Long::No);
        let got = names(&tar);
        assert!(matches!(got[0], Err(TarError::Truncated { .. })), "{got:?}");
    }

    #[test]
    fn base256_sizes_parse() {
        let h = header(b"huge.jpg", 12 << 30, b'0');
        assert_eq!(parse_number(&h[124..136]), Some(12 << 30));
        assert_eq!(parse_number(b"  0000017 \0"), Some(15));
        assert_eq!(parse_number(b"\0\0\0"), None);
        assert!(check_checksum(&h).is_ok());
    }
}
