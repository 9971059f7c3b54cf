//! The hash of an item type's name that a queue or a connection keeps in its shared
//! memory, so that a handle received as the wrong type is refused on arrival.

/// A stable hash of a type's name: the item type a queue was made for.
pub(crate) fn type_hash(name: &str) -> u64 {
    // FNV-1a.
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
