//! A loader restarted under a running trainer: opening each ring (a new one, or one taken over
//! from a dead loader whose trainer waits), and, when stopped, leaving a ring to a successor
//! rather than removing it while its trainer waits for one.
//!
//! The protocol is `shared`'s ([`shared::Producer::open`], [`shared::Producer::hand_over`]); this
//! module decides which rings get which, and tells the user.

use std::path::PathBuf;

use shared::{Opened, Producer, RingError, RingInfo};

use crate::sampler::Shard;

/// One ring fed by the pipeline, and the shard of the data it receives.
pub struct RingFeed {
    pub producer: Producer,
    pub shard: Shard,
}

/// Opens one ring per path with `info` (its rank and world size set from the path's shard):
/// creates it, or takes over a ring whose loader died while its trainer still waits, printing
/// where that ring resumes.
pub fn open_feeds(
    paths: &[PathBuf],
    shards: &[Shard],
    info: &RingInfo,
) -> anyhow::Result<Vec<RingFeed>> {
    let mut feeds = Vec::with_capacity(paths.len());
    for (path, &shard) in paths.iter().zip(shards) {
        let info = RingInfo {
            rank: shard.rank as u32,
            world_size: shard.world_size as u32,
            ..info.clone()
        };
        let (producer, opened) = Producer::open(path, &info).map_err(explain)?;
        if let Opened::TookOver(t) = &opened {
            let steps_per_epoch = info.steps_per_epoch.max(1);
            eprintln!(
                "loader: took over {} from the dead loader (pid {}); its trainer (pid {}) reads step {} next, \
                 {} batch(es) already in the ring are kept; resuming at global step {} (epoch {}, step {} of it)",
                path.display(),
                t.previous_pid,
                t.consumer_pid,
                producer.info().first_step + t.read_pos,
                t.kept(),
                t.resume_step,
                t.resume_step / steps_per_epoch,
                t.resume_step % steps_per_epoch,
            );
            if producer.info().first_step != info.first_step {
                eprintln!(
                    "loader:   (the ring's stream started at global step {}, not at this command's {}; \
                     the ring's is kept)",
                    producer.info().first_step,
                    info.first_step
                );
            }
        }
        feeds.push(RingFeed { producer, shard });
    }
    Ok(feeds)
}

/// A ring error with the loader's meaning of the ring's stream key added.
fn explain(e: RingError) -> anyhow::Error {
    match &e {
        RingError::StreamMismatch { differences, .. }
            if differences.iter().any(|d| d.starts_with("stream key")) =>
        {
            anyhow::anyhow!(
                "{e} (the loader's stream key covers --augment-config, --max-pixels and the \
                 dataset's images and labels)"
            )
        }
        _ => e.into(),
    }
}

/// Ends an interrupted loader's rings: a ring whose live trainer waits for a new loader
/// (`trainer --loader-restart-wait`) is left in place for a restarted loader to take over; the
/// others are aborted and removed (the trainer is told the loader stopped).
pub fn stop_feeds(feeds: Vec<RingFeed>) {
    for feed in feeds {
        let mut producer = feed.producer;
        match producer.consumer_restart_wait() {
            Some(wait) => {
                eprintln!(
                    "loader: the trainer on {} waits up to {:.0}s for a new loader; the ring is left in place: \
                     start this loader again with the same command to continue where it stopped",
                    producer.path().display(),
                    wait.as_secs_f64()
                );
                producer.hand_over();
            }
            None => producer.abort(), // dropped below: the ring is removed
        }
    }
}
