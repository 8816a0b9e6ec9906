//! What every endpoint's answer shares: Slack's error envelope and the bearer token of a
//! request. A leaf: the endpoint modules and the router import it, it imports none of them.

/// `{"ok":false,"error":"<code>"}`, the body of every Slack error.
pub(crate) fn error_body(code: &str) -> String {
    let mut s = String::from("{\"ok\":false,\"error\":");
    crate::json::push_str(&mut s, code);
    s.push('}');
    s
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
