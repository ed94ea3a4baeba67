//! A small 64-bit payload checksum both sides can agree on (FNV-1a).

/// FNV-1a offset basis: the starting value for [`fnv1a64_update`].
pub const FNV1A64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV1A64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues an FNV-1a hash `h` over `data`.
pub fn fnv1a64_update(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(FNV1A64_PRIME);
    }
    h
}

/// FNV-1a 64-bit hash of `data`.
pub fn fnv1a64(data: &[u8]) -> u64 {
    fnv1a64_update(FNV1A64_INIT, data)
}
