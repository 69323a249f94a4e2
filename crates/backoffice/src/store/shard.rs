//! Write sharding for sparse GSIs. An index whose hash key takes one of a few values
//! would send every write of a busy hour to one partition; spreading items over
//! [`SHARD_COUNT`] hash keys avoids that, and readers query each shard in turn.

/// Number of shards. Changing it needs a backfill of the shard attribute.
pub const SHARD_COUNT: u32 = 16;

/// The shard of an item: a stable FNV-1a hash of its key, so an item keeps its shard
/// when it is rewritten.
pub fn shard_of(key: &str) -> String {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:02}", hash % u64::from(SHARD_COUNT))
}

/// Every shard value, in the order readers visit them.
pub fn all_shards() -> impl Iterator<Item = String> {
    (0..SHARD_COUNT).map(|shard| format!("{shard:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn shards_are_stable_and_cover_every_value() {
        assert_eq!(shard_of("cart-42"), shard_of("cart-42"));
        let seen: HashSet<String> = (0..1000).map(|i| shard_of(&format!("item-{i}"))).collect();
        let every: HashSet<String> = all_shards().collect();
        assert_eq!(seen, every);
    }
}
