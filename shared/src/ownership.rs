//! Whose ring is it? A ring file is only used when it belongs to this user and nobody else can
//! write it.
//!
//! A ring in a world-writable directory such as `/dev/shm` can be created by anyone. A file that
//! another user squatted at the ring's path, or one that group or others may write, could feed a
//! training run someone else's batches, so producer, consumer and observer all refuse it:
//!
//! * the file must be owned by this process's effective uid, unless [`allow_other_owner`] was
//!   called (the binaries' `--allow-foreign-ring`), which is how root (or anyone) accepts a ring
//!   made by another account on purpose. Root is held to the rule like everyone else;
//! * its mode must not give write permission to group or others (rings are created 0600); this
//!   part is never waived.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::RingError;

static ALLOW_OTHER_OWNER: AtomicBool = AtomicBool::new(false);

/// Process-wide: accept ring files owned by another user (the mode rule still holds). Meant to
/// be set once at start-up from an explicit command-line flag.
pub fn allow_other_owner(allow: bool) {
    ALLOW_OTHER_OWNER.store(allow, Ordering::Relaxed);
}

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks the ownership rule for the ring file at `path` whose metadata (from `fstat` on the
/// opened file, so it is the file actually used) is `meta`.
pub fn check(path: &Path, meta: &Metadata) -> Result<(), RingError> {
    let me = effective_uid();
    if meta.uid() != me && !ALLOW_OTHER_OWNER.load(Ordering::Relaxed) {
        return Err(RingError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(RingError::UnsafeMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}
