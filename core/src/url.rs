//! Query-string building: Slack cursors end in `=` and must arrive as `%3D` (Q6).

/// Percent-encodes a query component (RFC 3986 unreserved characters stay as they are).
pub fn encode_component(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Builds `base?k=v&k=v` with every value encoded.
pub fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut url = String::with_capacity(base.len() + 16 * params.len());
    url.push_str(base);
    for (i, (k, v)) in params.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(k);
        url.push('=');
        encode_component(v, &mut url);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_padding_is_encoded() {
        assert_eq!(
            with_query("https://x/logs", &[("oldest", "10"), ("cursor", "ab+/c==")]),
            "https://x/logs?oldest=10&cursor=ab%2B%2Fc%3D%3D"
        );
    }

    #[test]
    fn comma_lists_are_encoded() {
        assert_eq!(with_query("b", &[("action", "a,b")]), "b?action=a%2Cb");
    }
}
