//! Random streams keyed by *what* they are for, never by *who* draws them.
//!
//! Every random choice in the loader comes from a generator derived from (seed, epoch, dataset
//! index, stream). A sample's views are therefore the same whichever worker makes them and
//! however many workers there are; the per-epoch shuffle is keyed by (seed, epoch).

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

/// Which random stream of a sample (or epoch) a generator feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Parameters of view `i` of a sample, in the recipe's order (view 0 is Barlow Twins'
    /// `transform`, view 1 its `transform_prime`).
    View(u32),
    /// The epoch's shuffle (keyed with dataset index `u64::MAX`).
    Shuffle,
}

impl Stream {
    /// The stream's number in the key: views 0 and 1 are 0 and 1, the shuffle 2, view `i >= 2`
    /// is `i + 1` (so the two-view streams keep the numbers they had before recipes had more
    /// views, and with them their bytes).
    fn id(self) -> u64 {
        match self {
            Stream::View(i) if i < 2 => i as u64,
            Stream::Shuffle => 2,
            Stream::View(i) => i as u64 + 1,
        }
    }
}

/// The generator type used everywhere in the loader.
pub type KeyedRng = Pcg64Mcg;

/// SplitMix64's finaliser: a bijective 64-bit mix with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A generator for (seed, epoch, index, stream).
pub fn keyed_rng(seed: u64, epoch: u64, index: u64, stream: Stream) -> KeyedRng {
    let mut h = mix(seed);
    for part in [epoch, index, stream.id()] {
        h = mix(h ^ part);
    }
    let lo = mix(h ^ 0x5851_F42D_4C95_7F2D);
    KeyedRng::from_seed((((h as u128) << 64) | lo as u128).to_le_bytes())
}

/// The epoch's order of dataset indices: a Fisher-Yates shuffle keyed by (seed, epoch).
pub fn epoch_order(seed: u64, epoch: u64, len: usize) -> Vec<u32> {
    use rand::seq::SliceRandom;
    let mut order: Vec<u32> = (0..len as u32).collect();
    order.shuffle(&mut keyed_rng(seed, epoch, u64::MAX, Stream::Shuffle));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn same_key_same_stream_and_different_keys_differ() {
        let a = keyed_rng(1, 2, 3, Stream::View(0)).next_u64();
        assert_eq!(a, keyed_rng(1, 2, 3, Stream::View(0)).next_u64());
        for other in [
            keyed_rng(0, 2, 3, Stream::View(0)),
            keyed_rng(1, 3, 3, Stream::View(0)),
            keyed_rng(1, 2, 4, Stream::View(0)),
            keyed_rng(1, 2, 3, Stream::View(1)),
        ] {
            assert_ne!(a, other.clone().next_u64());
        }
    }

    #[test]
    fn every_view_and_the_shuffle_have_their_own_stream() {
        let ids: Vec<u64> = (0..64).map(|i| Stream::View(i).id()).collect();
        let mut all = ids.clone();
        all.push(Stream::Shuffle.id());
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 65);
        // The two-view numbers of the format before multi-view recipes.
        assert_eq!((ids[0], ids[1], Stream::Shuffle.id()), (0, 1, 2));
    }

    #[test]
    fn epoch_order_is_a_permutation_that_changes_per_epoch() {
        let o0 = epoch_order(7, 0, 1000);
        let mut sorted = o0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
        assert_eq!(o0, epoch_order(7, 0, 1000));
        assert_ne!(o0, epoch_order(7, 1, 1000));
        assert_ne!(o0, epoch_order(8, 0, 1000));
    }
}
