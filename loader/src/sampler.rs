//! Which samples a rank sees in each epoch: PyTorch `DistributedSampler` semantics.
//!
//! Every rank computes the same shuffled order for an epoch (keyed by seed and epoch), pads it by
//! wrapping around to a multiple of the world size, and takes every `world_size`-th entry starting
//! at its rank. Shards are disjoint apart from the padding, together cover the epoch, and all have
//! the same length.

use anyhow::bail;

use views::keyed_rng::epoch_order;

/// This process's place among the data-parallel ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world_size: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            rank: 0,
            world_size: 1,
        }
    }
}

impl Shard {
    /// Checks `rank < world_size`.
    pub fn new(rank: usize, world_size: usize) -> anyhow::Result<Shard> {
        if world_size == 0 || rank >= world_size {
            bail!("rank {rank} is not in 0..world size {world_size}");
        }
        Ok(Shard { rank, world_size })
    }

    /// Rank and world size from a launcher's environment when not given as flags: `RANK` and
    /// `WORLD_SIZE` (torchrun and friends), else `SLURM_PROCID` and `SLURM_NTASKS` (Slurm).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Shard>> {
        for (rank_var, size_var) in [("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")] {
            if let (Some(rank), Some(size)) = (get(rank_var), get(size_var)) {
                let parse = |var: &str, v: &str| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| anyhow::anyhow!("{var}={v:?} is not a number"))
                };
                return Shard::new(parse(rank_var, &rank)?, parse(size_var, &size)?).map(Some);
            }
        }
        Ok(None)
    }

    /// Samples per rank per epoch: `ceil(dataset_len / world_size)`.
    pub fn len(&self, dataset_len: usize) -> usize {
        dataset_len.div_ceil(self.world_size)
    }

    /// True when the shard of a `dataset_len` dataset is empty.
    pub fn is_empty(&self, dataset_len: usize) -> bool {
        self.len(dataset_len) == 0
    }

    /// This rank's dataset indices for `epoch`, in order.
    pub fn epoch_indices(&self, seed: u64, epoch: u64, dataset_len: usize) -> Vec<u32> {
        let order = epoch_order(seed, epoch, dataset_len);
        self.select(&order)
    }

    /// This rank's part of an epoch order: pad by wrapping to a multiple of the world size, then
    /// take `order[rank], order[rank + world_size], ...`.
    pub fn select(&self, order: &[u32]) -> Vec<u32> {
        let per_rank = self.len(order.len());
        (0..per_rank)
            .map(|i| order[(self.rank + i * self.world_size) % order.len()])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_cover_the_epoch_and_pad_by_wrapping() {
        for (world, len) in [
            (1, 10),
            (2, 10),
            (3, 10),
            (4, 7),
            (8, 3),
            (5, 1000),
            (7, 1001),
        ] {
            let order = epoch_order(3, 1, len);
            let shards: Vec<Vec<u32>> = (0..world)
                .map(|r| Shard::new(r, world).unwrap().select(&order))
                .collect();
            let per = len.div_ceil(world);
            assert!(
                shards.iter().all(|s| s.len() == per),
                "equal lengths for ({world}, {len})"
            );
            let mut all: Vec<u32> = shards.concat();
            // DistributedSampler: the padded list is order + order[..pad], dealt round-robin.
            let pad = per * world - len;
            let mut expected: Vec<u32> = order
                .iter()
                .chain(order.iter().cycle().take(pad))
                .copied()
                .collect();
            all.sort_unstable();
            expected.sort_unstable();
            assert_eq!(
                all, expected,
                "cover the epoch exactly, plus the wrapped padding ({world}, {len})"
            );
            if pad == 0 {
                let mut seen = std::collections::HashSet::new();
                assert!(
                    shards.concat().iter().all(|i| seen.insert(*i)),
                    "disjoint ({world}, {len})"
                );
            }
        }
    }

    #[test]
    fn ranks_agree_on_the_permutation() {
        let a = Shard::new(0, 2).unwrap().epoch_indices(9, 4, 100);
        let b = Shard::new(1, 2).unwrap().epoch_indices(9, 4, 100);
        let order = epoch_order(9, 4, 100);
        for i in 0..50 {
            assert_eq!(a[i], order[2 * i]);
            assert_eq!(b[i], order[2 * i + 1]);
        }
    }

    #[test]
    fn environment_of_torchrun_and_slurm() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
        assert_eq!(
            Shard::from_env(env(&[("RANK", "3"), ("WORLD_SIZE", "8")])).unwrap(),
            Some(Shard {
                rank: 3,
                world_size: 8
            })
        );
        assert_eq!(
            Shard::from_env(env(&[("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2")])).unwrap(),
            Some(Shard {
                rank: 1,
                world_size: 2
            })
        );
        assert!(Shard::from_env(env(&[("RANK", "2"), ("WORLD_SIZE", "2")])).is_err());
        assert!(Shard::from_env(env(&[("RANK", "x"), ("WORLD_SIZE", "2")])).is_err());
    }
}
