//! The line a pass draws on stderr while it runs in a terminal: what it is reading (stream and
//! workspace), pages and records so far, and how often Slack made it wait. A backfill of a large
//! org runs for minutes; this is its sign of life. Silent when stderr is not a terminal (cron,
//! systemd, CI, a pipe): logs there stay line by line.
//!
//! The host sees what it needs without asking the component: each request to Slack passes
//! through its HTTP hooks ([`Progress::request`], [`Progress::answered`]) and each batch through
//! its sink ([`Progress::delivered`]). The component's own log lines are printed above the line
//! ([`GuestLog`]), so the two do not overwrite each other.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// What the line shows, kept whether or not a line is drawn (so it is testable).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    /// The walk of the last request: `audit`, `access[T…]`, `integration`.
    pub current: Option<String>,
    pub pages: u64,
    /// Records the sink accepted, per stream.
    pub records: BTreeMap<String, u64>,
    /// Answers of 429 (Slack asked to wait).
    pub waits: u64,
}

impl Counts {
    /// The line's text.
    pub fn line(&self) -> String {
        let mut parts = vec![match &self.current {
            Some(walk) => format!("reading {walk}"),
            None => "starting".to_owned(),
        }];
        parts.push(format!(
            "{} page{}",
            self.pages,
            if self.pages == 1 { "" } else { "s" }
        ));
        let records: Vec<String> = self
            .records
            .iter()
            .map(|(stream, n)| format!("{stream} {n}"))
            .collect();
        parts.push(if records.is_empty() {
            "0 records".to_owned()
        } else {
            format!("records: {}", records.join(", "))
        });
        if self.waits > 0 {
            parts.push(format!(
                "rate-limited {} time{}",
                self.waits,
                if self.waits == 1 { "" } else { "s" }
            ));
        }
        parts.join(" · ")
    }
}

/// The walk a request to Slack belongs to, from its URL; `None` for any other request.
pub fn walk_of(uri: &http::Uri) -> Option<String> {
    let path = uri.path();
    let stream = if path.ends_with("/audit/v1/logs") {
        "audit"
    } else if path.ends_with("/team.accessLogs") {
        "access"
    } else if path.ends_with("/team.integrationLogs") {
        "integration"
    } else {
        return None;
    };
    let team = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "team_id")
            .map(|(_, v)| v.into_owned())
    });
    Some(match team {
        Some(t) => format!("{stream}[{t}]"),
        None => stream.to_owned(),
    })
}

/// A pass's progress: shared by its HTTP hooks, its sink and its guest's stderr.
#[derive(Clone, Default)]
pub struct Progress {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    bar: Option<ProgressBar>,
    counts: Mutex<Counts>,
}

impl Progress {
    /// Draws nothing and counts nothing.
    pub fn off() -> Progress {
        Progress { inner: None }
    }

    /// A line on stderr if that is a terminal, else [`Progress::off`].
    pub fn on_terminal() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::off();
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress::with_bar(Some(bar))
    }

    fn with_bar(bar: Option<ProgressBar>) -> Progress {
        let p = Progress {
            inner: Some(Arc::new(Inner {
                bar,
                counts: Mutex::default(),
            })),
        };
        p.update(|_| {});
        p
    }

    pub fn is_on(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.bar.is_some())
    }

    fn update(&self, change: impl FnOnce(&mut Counts)) {
        let Some(inner) = &self.inner else { return };
        let mut counts = inner.counts.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut counts);
        if let Some(bar) = &inner.bar {
            bar.set_message(counts.line());
        }
    }

    /// A request is about to go out.
    pub fn request(&self, uri: &http::Uri) {
        if let Some(walk) = walk_of(uri) {
            self.update(|c| c.current = Some(walk));
        }
    }

    /// Slack answered a request of a walk.
    pub fn answered(&self, uri: &http::Uri, status: u16) {
        if walk_of(uri).is_none() {
            return;
        }
        self.update(|c| match status {
            429 => c.waits += 1,
            200..=299 => c.pages += 1,
            _ => {}
        });
    }

    /// The sink accepted `count` records of `stream`.
    pub fn delivered(&self, stream: &str, count: u32) {
        self.update(|c| *c.records.entry(stream.to_owned()).or_default() += u64::from(count));
    }

    /// Prints a line above the progress line (or plainly, when there is none).
    pub fn println(&self, line: &str) {
        match self.inner.as_ref().and_then(|i| i.bar.as_ref()) {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the line: the pass's report follows.
    pub fn finish(&self) {
        if let Some(bar) = self.inner.as_ref().and_then(|i| i.bar.as_ref()) {
            bar.finish_and_clear();
        }
    }

    #[cfg(test)]
    fn counts(&self) -> Counts {
        self.inner
            .as_ref()
            .map(|i| i.counts.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

/// The guest's stderr while a progress line is drawn: whole lines, printed above it.
pub struct GuestLog(pub Progress);

impl wasmtime_wasi::cli::IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            progress: self.0.clone(),
            partial: Vec::new(),
        })
    }
}

/// Bytes in, lines out through [`Progress::println`]; a line without its end waits for it.
struct LineWriter {
    progress: Progress,
    partial: Vec<u8>,
}

/// A guest line longer than this is printed in pieces rather than held.
const MAX_LINE: usize = 64 * 1024;

impl LineWriter {
    fn take_lines(&mut self) {
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.progress
                .println(String::from_utf8_lossy(&line[..end]).trim_end_matches('\r'));
        }
        if self.partial.len() > MAX_LINE {
            let piece = std::mem::take(&mut self.partial);
            self.progress.println(&String::from_utf8_lossy(&piece));
        }
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.partial.extend_from_slice(buf);
        self.take_lines();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.progress.println(&String::from_utf8_lossy(&rest));
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_their_walk_and_answers_count() {
        let p = Progress::with_bar(None);
        let access: http::Uri = "https://slack.com/api/team.accessLogs?limit=999&team_id=T1"
            .parse()
            .unwrap();
        let audit: http::Uri = "https://api.slack.com/audit/v1/logs?oldest=1"
            .parse()
            .unwrap();
        let other: http::Uri = "https://slack.com/api/auth.teams.list".parse().unwrap();
        assert_eq!(p.counts().line(), "starting · 0 pages · 0 records");
        p.request(&audit);
        p.answered(&audit, 200);
        p.delivered("audit", 1000);
        p.request(&other);
        p.answered(&other, 200);
        p.request(&access);
        p.answered(&access, 429);
        p.answered(&access, 200);
        p.delivered("access", 7);
        assert_eq!(
            p.counts().line(),
            "reading access[T1] · 2 pages · records: access 7, audit 1000 · rate-limited 1 time"
        );
        // Off: nothing counted, nothing drawn.
        let off = Progress::off();
        off.request(&audit);
        assert_eq!(off.counts(), Counts::default());
        assert!(!off.is_on());
    }

    #[test]
    fn guest_output_reaches_the_log_as_whole_lines() {
        let p = Progress::with_bar(None);
        let mut w = LineWriter {
            progress: p,
            partial: Vec::new(),
        };
        w.partial.extend_from_slice(b"one\r\ntw");
        w.take_lines();
        assert_eq!(w.partial, b"tw", "a line waits for its end");
        w.partial.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        w.take_lines();
        assert!(w.partial.is_empty(), "an endless line is printed in pieces");
    }
}
