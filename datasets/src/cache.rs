//! barlow's cache directory: `$BARLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/barlow`, else
//! `~/.cache/barlow` (the demo dataset and the shard indexes live there).

use std::path::PathBuf;

/// The cache directory (not created here).
pub fn barlow_cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("BARLOW_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("barlow")))
        .or_else(|| var("HOME").map(|p| p.join(".cache").join("barlow")))
        .unwrap_or_else(|| std::env::temp_dir().join("barlow"))
}
