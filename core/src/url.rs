//! Query strings: building them (Slack cursors end in `=` and must arrive as `%3D`, Q6) and
//! reading them back (routes, the OAuth callback, the test models), with the `percent-encoding`
//! and `form_urlencoded` crates: what we send is percent-encoded per RFC 3986, what we receive is
//! read as a browser sends a query (`application/x-www-form-urlencoded`: `+` is a space).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query component (RFC 3986 unreserved characters stay as they are).
pub fn encode_component(value: &str, out: &mut String) {
    out.extend(utf8_percent_encode(value, COMPONENT));
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

/// Decoded query pairs of a URL (form decoding: `+` is a space, a broken escape stays as
/// written, invalid UTF-8 becomes U+FFFD).
pub fn parse_query(url: &str) -> Vec<(String, String)> {
    let Some((_, q)) = url.split_once('?') else {
        return Vec::new();
    };
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
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

    #[test]
    fn queries_read_as_a_browser_sends_them() {
        assert_eq!(
            parse_query("/cb?code=a+b%2Bc&state=%E2%9C%93&flag&x=%4"),
            vec![
                ("code".into(), "a b+c".into()),
                ("state".into(), "\u{2713}".into()),
                ("flag".into(), String::new()),
                ("x".into(), "%4".into()),
            ]
        );
        assert!(parse_query("/no-query").is_empty());
    }

    #[test]
    fn what_we_send_reads_back_as_it_was() {
        for v in [
            "ab+/c==",
            "a b&c=d",
            "dXNlcjpVMDYxTkZUVDI=",
            "\u{e9}t\u{e9} %41",
            "",
        ] {
            assert_eq!(
                parse_query(&with_query("u", &[("v", v)])),
                vec![("v".to_string(), v.to_string())]
            );
        }
    }
}
