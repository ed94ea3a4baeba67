//! Ring names: how a `--shm` argument becomes a file path.

use std::path::{Path, PathBuf};

use crate::RingError;

/// Directory that plain ring names live in.
pub const SHM_DIR: &str = "/dev/shm";

/// Longest plain ring name accepted by [`ring_path`].
pub const MAX_NAME_LEN: usize = 64;

/// Turns a ring name or absolute path into the ring file's path.
///
/// A plain `name` is 1-64 characters of `[A-Za-z0-9._-]`, not `.` or `..`, and maps to
/// `/dev/shm/<name>`. An absolute path is taken as is, but its parent directory must exist
/// (and it must not end in `/`, `.` or `..`). Anything else is [`RingError::BadName`] with a
/// message stating the rule.
pub fn ring_path(name_or_path: &str) -> Result<PathBuf, RingError> {
    let bad = |reason: String| RingError::BadName {
        name: name_or_path.to_string(),
        reason,
    };
    if name_or_path.starts_with('/') {
        let path = Path::new(name_or_path);
        if name_or_path.ends_with('/') {
            return Err(bad(
                "an absolute path must name a file, not end in '/'".into()
            ));
        }
        match path.file_name() {
            Some(_) => {}
            None => return Err(bad("an absolute path must end in a file name".into())),
        }
        if path.components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::CurDir
            )
        }) || name_or_path.ends_with("/.")
        {
            return Err(bad(
                "an absolute path must not contain '.' or '..' components".into(),
            ));
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !parent.is_dir() {
            return Err(bad(format!(
                "the directory {} does not exist",
                parent.display()
            )));
        }
        return Ok(path.to_path_buf());
    }
    if name_or_path.is_empty() {
        return Err(bad("the name is empty".into()));
    }
    if name_or_path.len() > MAX_NAME_LEN {
        return Err(bad(format!(
            "the name is {} bytes long, more than {MAX_NAME_LEN}",
            name_or_path.len()
        )));
    }
    if name_or_path == "." || name_or_path == ".." {
        return Err(bad("\".\" and \"..\" are not ring names".into()));
    }
    if let Some(c) = name_or_path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let what = if c == '/' {
            "a relative path ('/' is only allowed in absolute paths)".to_string()
        } else {
            format!("the character {c:?} is not allowed")
        };
        return Err(bad(what));
    }
    Ok(Path::new(SHM_DIR).join(name_or_path))
}
