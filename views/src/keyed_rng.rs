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
    /// Parameters of the first view (the paper's `transform`).
    ViewA = 0,
    /// Parameters of the second view (the paper's `transform_prime`).
    ViewB = 1,
    /// The epoch's shuffle (keyed with dataset index `u64::MAX`).
    Shuffle = 2,
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
    for part in [epoch, index, stream as u64] {
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
        let a = keyed_rng(1, 2, 3, Stream::ViewA).next_u64();
        assert_eq!(a, keyed_rng(1, 2, 3, Stream::ViewA).next_u64());
        for other in [
            keyed_rng(0, 2, 3, Stream::ViewA),
            keyed_rng(1, 3, 3, Stream::ViewA),
            keyed_rng(1, 2, 4, Stream::ViewA),
            keyed_rng(1, 2, 3, Stream::ViewB),
        ] {
            assert_ne!(a, other.clone().next_u64());
        }
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
