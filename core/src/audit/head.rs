//! Reads an audit entry's `id` and `date_create` straight from its raw bytes.
//!
//! The page parse already validated every entry as JSON (it holds them as `RawValue`s), so this
//! scan only has to find two top-level keys; Slack writes them first, so it stops after a few
//! dozen bytes instead of walking the whole entry again. It gives the same answer as
//! deserialising `{id: string, date_create: i64}` with serde (a property test checks), except
//! that a key repeated after both were found is not looked at (serde would refuse the entry; JSON
//! leaves duplicate names to the reader).

use std::borrow::Cow;

/// The two fields the audit walk reads from each entry.
#[derive(Debug, PartialEq, Eq)]
pub struct EntryHead<'a> {
    pub id: Cow<'a, str>,
    pub date_create: i64,
}

/// Finds top-level `id` (a string) and `date_create` (an integer) in one JSON object that is
/// already known to be valid JSON. Errors say which field is missing or of the wrong type.
pub fn entry_head(raw: &str) -> Result<EntryHead<'_>, String> {
    let mut s = Scanner {
        b: raw.as_bytes(),
        i: 0,
        src: raw,
    };
    s.ws();
    if !s.eat(b'{') {
        return Err("an audit entry is not a JSON object".into());
    }
    let mut id: Option<Cow<'_, str>> = None;
    let mut date_create: Option<i64> = None;
    s.ws();
    if s.eat(b'}') {
        return missing(id, date_create);
    }
    loop {
        s.ws();
        let key = s.string()?;
        s.ws();
        if !s.eat(b':') {
            return Err(malformed());
        }
        s.ws();
        match &*key {
            "id" => {
                if id.is_some() {
                    return Err("duplicate field `id`".into());
                }
                if s.peek() != Some(b'"') {
                    return Err("`id` is not a string".into());
                }
                id = Some(s.string()?);
            }
            "date_create" => {
                if date_create.is_some() {
                    return Err("duplicate field `date_create`".into());
                }
                date_create = Some(s.integer()?);
            }
            _ => s.skip_value()?,
        }
        if let (Some(_), Some(_)) = (&id, date_create) {
            return missing(id, date_create);
        }
        s.ws();
        match s.next() {
            Some(b',') => continue,
            Some(b'}') => return missing(id, date_create),
            _ => return Err(malformed()),
        }
    }
}

fn missing<'a>(
    id: Option<Cow<'a, str>>,
    date_create: Option<i64>,
) -> Result<EntryHead<'a>, String> {
    match (id, date_create) {
        (Some(id), Some(date_create)) => Ok(EntryHead { id, date_create }),
        (None, _) => Err("missing field `id`".into()),
        (_, None) => Err("missing field `date_create`".into()),
    }
}

fn malformed() -> String {
    "an audit entry is not well-formed JSON".into()
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    src: &'a str,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    /// A string token, borrowed when it has no escapes (Slack ids never do).
    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        let start = self.i;
        if !self.eat(b'"') {
            return Err(malformed());
        }
        let mut escaped = false;
        loop {
            match self.next() {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.i += 1;
                }
                Some(_) => {}
                None => return Err(malformed()),
            }
        }
        // `start` and `self.i` sit on ASCII quotes, so both are char boundaries.
        let token = self.src.get(start..self.i).ok_or_else(malformed)?;
        if escaped {
            serde_json::from_str::<String>(token)
                .map(Cow::Owned)
                .map_err(|e| e.to_string())
        } else {
            Ok(Cow::Borrowed(&token[1..token.len() - 1]))
        }
    }

    /// An integer that fits an i64, as serde's i64 accepts it: no fraction, no exponent.
    fn integer(&mut self) -> Result<i64, String> {
        let start = self.i;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.i += 1;
        }
        let token = self.src.get(start..self.i).ok_or_else(malformed)?;
        if token.is_empty() {
            return Err("`date_create` is not an integer".into());
        }
        token
            .parse::<i64>()
            .ok()
            .filter(|_| !token.starts_with('+'))
            .ok_or_else(|| format!("`date_create` is not an integer that fits 64 bits: {token}"))
    }

    /// Skips one value of any kind, nested ones included.
    fn skip_value(&mut self) -> Result<(), String> {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.string_bytes()?;
                }
                Some(b'{' | b'[') => {
                    depth += 1;
                    self.i += 1;
                }
                Some(b'}' | b']') => {
                    if depth == 0 {
                        // The end of the enclosing object: the value was empty.
                        return Err(malformed());
                    }
                    depth -= 1;
                    self.i += 1;
                }
                Some(b',') if depth == 0 => return Err(malformed()),
                Some(_) => {
                    // Scalars, separators and whitespace inside containers.
                    self.i += 1;
                    if depth == 0 {
                        while matches!(self.peek(), Some(c) if !matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                        {
                            self.i += 1;
                        }
                        return Ok(());
                    }
                }
                None => return Err(malformed()),
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    /// Skips a string token without decoding it.
    fn string_bytes(&mut self) -> Result<(), String> {
        self.i += 1;
        loop {
            match self.next() {
                Some(b'"') => return Ok(()),
                Some(b'\\') => self.i += 1,
                Some(_) => {}
                None => return Err(malformed()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    /// The reference: what serde makes of the same entry.
    fn serde_head(raw: &str) -> Option<(String, i64)> {
        #[derive(Deserialize)]
        struct Head {
            id: String,
            date_create: i64,
        }
        serde_json::from_str::<Head>(raw)
            .ok()
            .map(|h| (h.id, h.date_create))
    }

    fn ours(raw: &str) -> Option<(String, i64)> {
        entry_head(raw)
            .ok()
            .map(|h| (h.id.into_owned(), h.date_create))
    }

    #[test]
    fn reads_slack_shaped_entries() {
        let raw = r#"{"id":"0123a45b-6c7d","date_create":1521214343,"action":"user_login","actor":{"type":"user","user":{"id":"W1","name":"x \"y\""}},"entity":{"type":"workspace"},"context":{"location":{"type":"enterprise"},"ua":"Mozilla","ip_address":"1.2.3.4"}}"#;
        let h = entry_head(raw).unwrap();
        assert_eq!((&*h.id, h.date_create), ("0123a45b-6c7d", 1521214343));
        assert!(matches!(h.id, Cow::Borrowed(_)));
        // Keys in another order, nested keys of the same name, whitespace.
        let raw = r#" { "actor" : {"id":"nested","date_create":5} , "details":[{"id":1}],"date_create" : -7 , "id" : "a\u0062" } "#;
        assert_eq!(ours(raw), Some(("ab".into(), -7)));
    }

    #[test]
    fn wrong_or_missing_fields_are_errors() {
        for raw in [
            r#"{"id":1,"date_create":1}"#,
            r#"{"id":"a","date_create":"1"}"#,
            r#"{"id":"a","date_create":1.5}"#,
            r#"{"id":"a","date_create":1e3}"#,
            r#"{"id":"a","date_create":99999999999999999999}"#,
            r#"{"id":"a"}"#,
            r#"{"date_create":1}"#,
            r#"{}"#,
            r#"[]"#,
            r#"{"id":"a","id":"b","date_create":1}"#,
            r#"{"date_create":1,"date_create":2,"id":"a"}"#,
            r#"{"id":null,"date_create":1}"#,
        ] {
            assert!(entry_head(raw).is_err(), "{raw}");
            assert_eq!(serde_head(raw), None, "reference disagrees on {raw}");
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "[a-z\"\\\\\u{e9}\u{1F600} ]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("id".to_string()),
                        Just("date_create".to_string()),
                        "[a-z]{1,4}"
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn stops_once_both_fields_are_read() {
        // What follows is not read: the first values win.
        assert_eq!(
            ours(r#"{"id":"a","date_create":1,"id":"b","x":[}"#),
            Some(("a".into(), 1))
        );
    }

    proptest! {
        /// Whatever the entry holds, the scan agrees with serde (up to the point where it has
        /// both fields: serde's view of what follows is not the scan's business).
        #[test]
        fn agrees_with_serde(
            fields in prop::collection::vec((prop_oneof![Just("id".to_string()), Just("date_create".to_string()), "[a-z_]{1,6}"], json_value()), 0..6),
            spaced in any::<bool>(),
        ) {
            // Built by hand so duplicate keys survive (a map would merge them).
            let sep = if spaced { " , " } else { "," };
            let body = fields.iter().map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v)).collect::<Vec<_>>().join(sep);
            let raw = format!("{{{body}}}");
            // Where the scan has both fields: it reads nothing after that point, so it must agree
            // with serde on the entry cut there (which holds each key's first value).
            let first = |key: &str| fields.iter().position(|(k, _)| k == key);
            let complete_at = first("id").zip(first("date_create")).map(|(a, b)| a.max(b));
            let expected = match complete_at {
                Some(c) => {
                    let head = fields[..=c].iter().map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v)).collect::<Vec<_>>().join(sep);
                    serde_head(&format!("{{{head}}}"))
                }
                None => serde_head(&raw),
            };
            prop_assert_eq!(ours(&raw), expected, "{}", raw);
        }
    }
}
