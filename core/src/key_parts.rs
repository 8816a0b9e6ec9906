//! The stored form of a list of 64-bit keys (the audit ledger's id digests, an access tie's row
//! keys): a 4-byte format marker, an optional fixed header, then each key as 8 little-endian
//! bytes. One home for the byte layout, so the two lists cannot drift apart; what the keys mean
//! and how they are split into parts stays with their owners.

/// `marker`, then `header`, then `keys`.
pub fn encode(marker: &[u8; 4], header: &[u8], keys: &[u64]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(marker.len() + header.len() + keys.len() * 8);
    bytes.extend_from_slice(marker);
    bytes.extend_from_slice(header);
    for k in keys {
        bytes.extend_from_slice(&k.to_le_bytes());
    }
    bytes
}

/// The header and the keys of `bytes`, or `None` if they do not start with `marker` and a
/// header of `header_len` bytes followed by whole keys.
pub fn decode<'b>(
    marker: &[u8; 4],
    header_len: usize,
    bytes: &'b [u8],
) -> Option<(&'b [u8], impl Iterator<Item = u64> + 'b)> {
    let rest = bytes.strip_prefix(marker.as_slice())?;
    let (header, body) = rest.split_at_checked(header_len)?;
    if body.len() % 8 != 0 {
        return None;
    }
    let keys = body.chunks_exact(8).map(|c| {
        let mut d = [0u8; 8];
        d.copy_from_slice(c);
        u64::from_le_bytes(d)
    });
    Some((header, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_and_other_bytes_do_not() {
        let bytes = encode(b"TEST", &7i64.to_le_bytes(), &[1, u64::MAX, 3]);
        let (header, keys) = decode(b"TEST", 8, &bytes).unwrap();
        assert_eq!(header, 7i64.to_le_bytes());
        assert_eq!(keys.collect::<Vec<_>>(), [1, u64::MAX, 3]);
        assert!(decode(b"TESX", 8, &bytes).is_none(), "another marker");
        assert!(decode(b"TEST", 9, &bytes).is_none(), "not whole keys");
        assert!(decode(b"TEST", 8, b"TES").is_none(), "short");
        assert_eq!(decode(b"TEST", 0, b"TEST").unwrap().1.count(), 0);
    }
}
