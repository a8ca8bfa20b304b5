//! FNV-1a 64: a stable, dependency-free hash for component digests and A/B
//! buckets. Stability matters: A/B assignment must agree across a fleet and
//! across releases (`experiment::tests::a_known_bucket_never_changes`).

/// FNV-1a 64 of a byte sequence.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
