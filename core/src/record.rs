//! Records as they leave the collector: one NDJSON line each,
//! `{"id","stream","source","team_id"?,"time","collected_at","event"}`.
//!
//! `event` is the Slack object exactly as received (its raw bytes), so unknown fields survive and
//! nothing is parsed or re-serialised that need not be.

use std::fmt::Write as _;
use std::io::Write;

use crate::config::OutputFormat;
use crate::env::SinkBatch;

/// Builds one sink batch of records for one stream.
pub struct RecordWriter {
    stream: &'static str,
    source: &'static str,
    collected_at: i64,
    format: OutputFormat,
    buf: Vec<u8>,
    count: u32,
}

impl RecordWriter {
    pub fn new(
        stream: &'static str,
        source: &'static str,
        collected_at: i64,
        format: OutputFormat,
    ) -> RecordWriter {
        RecordWriter {
            stream,
            source,
            collected_at,
            format,
            buf: Vec::new(),
            count: 0,
        }
    }

    /// Appends one record. `event` must be one complete JSON value (a `RawValue` from the page).
    pub fn push(&mut self, id: &str, team_id: Option<&str>, time: i64, event: &str) {
        if self.format == OutputFormat::Ocsf {
            // `event` came out of a parsed page, so it is JSON and the mapping cannot fail; the
            // raw form below is only a last resort that keeps the record.
            if let Ok(mapped) =
                crate::ocsf::map_record(self.stream, id, team_id, time, self.collected_at, event)
            {
                self.buf.extend_from_slice(mapped.as_bytes());
                self.buf.push(b'\n');
                self.count += 1;
                return;
            }
        }
        let b = &mut self.buf;
        b.reserve(event.len() + 160);
        b.extend_from_slice(b"{\"id\":");
        write_json_str(b, id);
        b.extend_from_slice(b",\"stream\":\"");
        b.extend_from_slice(self.stream.as_bytes());
        b.extend_from_slice(b"\",\"source\":\"");
        b.extend_from_slice(self.source.as_bytes());
        b.push(b'"');
        if let Some(t) = team_id {
            b.extend_from_slice(b",\"team_id\":");
            write_json_str(b, t);
        }
        // Writing integers into a Vec cannot fail.
        let _ = write!(
            b,
            ",\"time\":{},\"collected_at\":{},\"event\":",
            time, self.collected_at
        );
        b.extend_from_slice(event.as_bytes());
        b.extend_from_slice(b"}\n");
        self.count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    /// Hands over the batch and starts a new, empty one.
    pub fn take_batch(&mut self) -> SinkBatch {
        let batch = SinkBatch {
            stream: self.stream,
            count: self.count,
            ndjson: std::mem::take(&mut self.buf),
            key: String::new(),
        };
        self.count = 0;
        batch
    }
}

/// Writes `s` as a JSON string. Slack ids are plain ASCII, so the common case is one copy.
fn write_json_str(b: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
        b.push(b'"');
        b.extend_from_slice(s.as_bytes());
        b.push(b'"');
    } else {
        // serde_json escapes correctly; writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *b, s);
    }
}

/// The record id of an entry that has no Slack id (access rows, integration entries): the first
/// 128 bits of SHA-256 over the parts, each prefixed with its length (so `("ab","c")` and
/// `("a","bc")` differ), as 32 lowercase hex digits.
///
/// Cryptographic because parts of the input are chosen by users (a user agent, an app name): with
/// a fast non-cryptographic hash a user could craft a second login whose record id equals one
/// of their own, and a deduplicating SIEM would drop it. 128 bits keep even a birthday search
/// (2^64 work) out of reach. Ids of this form replaced the 16-digit FNV-1a ids of format 1
/// (README: Records).
pub fn content_id(parts: &[&[u8]]) -> String {
    let digest = content_digest(parts);
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The first 64 bits of [`content_id`]'s digest, for keys a checkpoint keeps to recognise what
/// it delivered (compact; a collision there needs a second preimage of one given key, 2^64 work).
pub fn content_key(parts: &[&[u8]]) -> u64 {
    let digest = content_digest(parts);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

fn content_digest(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// A stable 64-bit FNV-1a hash, for record ids of streams without Slack ids.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_line_is_valid_json_with_raw_event() {
        let mut w = RecordWriter::new("audit", "audit/v1/logs", 1_700_000_100, OutputFormat::Raw);
        w.push(
            "id-1",
            None,
            1_700_000_000,
            r#"{"id":"id-1","x":[1, 2],"future_field":true}"#,
        );
        w.push("we\"ird", Some("T1"), 5, r#"{"a":1}"#);
        let batch = w.take_batch();
        assert_eq!(batch.count, 2);
        let text = String::from_utf8(batch.ndjson).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["id"], "id-1");
        assert_eq!(lines[0]["stream"], "audit");
        assert_eq!(lines[0]["time"], 1_700_000_000);
        assert_eq!(lines[0]["collected_at"], 1_700_000_100);
        assert_eq!(lines[0]["event"]["future_field"], true);
        assert!(lines[0].get("team_id").is_none());
        assert_eq!(lines[1]["id"], "we\"ird");
        assert_eq!(lines[1]["team_id"], "T1");
        // Raw bytes kept as received.
        assert!(text.contains(r#""x":[1, 2]"#));
        assert!(w.is_empty());
    }

    #[test]
    fn content_ids_are_128_bit_hex_and_separate_parts() {
        let id = content_id(&[b"ab", b"c"]);
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(id, content_id(&[b"a", b"bc"]));
        assert_eq!(id, content_id(&[b"ab", b"c"]));
        // The key is the id's first 64 bits, little-endian.
        let key = content_key(&[b"ab", b"c"]);
        let hex: String = key
            .to_le_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, id[..16]);
        // A fixed vector (computed with Python's hashlib: sha256(le64(1) + b"x")), so a change of
        // the function cannot pass unnoticed: ids are a contract with the SIEM.
        assert_eq!(content_id(&[b"x"]), "f91b14e7bbea4c5bfa0e1a7040177166");
    }

    #[test]
    fn fnv_separates_parts() {
        assert_ne!(fnv1a64(&[b"ab", b"c"]), fnv1a64(&[b"a", b"bc"]));
        assert_eq!(fnv1a64(&[b"x"]), fnv1a64(&[b"x"]));
    }
}
