//! Hand-written JSON output for the hot paths (audit entries are rendered by the
//! thousand per page; building `serde_json::Value`s for them would dominate).

use std::fmt::Write;

/// Appends `s` as a quoted, escaped JSON string.
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => {
                out.push_str(&s[start..i]);
                let _ = write!(out, "\\u{:04x}", c as u32);
                start = i + c.len_utf8();
                continue;
            }
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(esc);
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A tiny builder for a JSON object written straight into a `String`.
pub(crate) struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, first: true }
    }

    /// Writes the key and returns the buffer so the caller can write any value.
    pub(crate) fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_str(self.out, k);
        self.out.push(':');
        self.out
    }

    pub(crate) fn str(&mut self, k: &str, v: &str) -> &mut Self {
        let out = self.key(k);
        push_str(out, v);
        self
    }

    pub(crate) fn int(&mut self, k: &str, v: i64) -> &mut Self {
        let out = self.key(k);
        let _ = write!(out, "{v}");
        self
    }

    pub(crate) fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k).push_str(if v { "true" } else { "false" });
        self
    }

    pub(crate) fn null(&mut self, k: &str) -> &mut Self {
        self.key(k).push_str("null");
        self
    }

    pub(crate) fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.null(k),
        }
    }

    pub(crate) fn str_array<S: AsRef<str>>(&mut self, k: &str, items: &[S]) -> &mut Self {
        let out = self.key(k);
        push_str_array(out, items);
        self
    }

    /// Writes a raw, already-serialised JSON value.
    pub(crate) fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k).push_str(json);
        self
    }

    pub(crate) fn obj(&mut self, k: &str, f: impl FnOnce(&mut Obj<'_>)) -> &mut Self {
        let out = self.key(k);
        let mut inner = Obj::new(out);
        f(&mut inner);
        inner.end();
        self
    }

    pub(crate) fn end(self) {
        self.out.push('}');
    }
}

pub(crate) fn push_str_array<S: AsRef<str>>(out: &mut String, items: &[S]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, s.as_ref());
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_parses_back() {
        let mut s = String::new();
        let mut o = Obj::new(&mut s);
        o.str("a", "q\"uote\\ \n\u{1}é")
            .int("n", -3)
            .bool("b", true)
            .null("z");
        o.str_array("xs", &["x", "y"]);
        o.obj("o", |o| {
            o.opt_str("s", None);
        });
        o.end();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["a"], "q\"uote\\ \n\u{1}é");
        assert_eq!(v["n"], -3);
        assert_eq!(v["xs"][1], "y");
        assert!(v["o"]["s"].is_null());
    }
}
