//! In-memory stand-ins for the outside world, for unit and property tests.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::env::{
    Clock, HttpResponse, KvStore, RecordSink, SinkBatch, SinkError, StoreError, Transport,
    TransportError,
};

/// Distinct "random" bytes per call (a counter), for `Env::random` in tests.
pub fn test_random() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    out
}

/// Answers requests from a script, in order.
pub struct ScriptedTransport {
    pub script: VecDeque<Result<HttpResponse, TransportError>>,
    pub urls: Vec<String>,
    /// Every POST: URL, bearer, form body.
    pub posts: Vec<(String, Option<String>, String)>,
}

impl ScriptedTransport {
    pub fn new(script: Vec<Result<HttpResponse, TransportError>>) -> Self {
        ScriptedTransport {
            script: script.into(),
            urls: Vec::new(),
            posts: Vec::new(),
        }
    }
}

impl Transport for ScriptedTransport {
    fn get(&mut self, url: &str, _: &str, _: Duration) -> Result<HttpResponse, TransportError> {
        self.urls.push(url.to_string());
        self.script
            .pop_front()
            .unwrap_or(Err(TransportError::Network("script ended".into())))
    }

    fn post_form(
        &mut self,
        url: &str,
        bearer: Option<&str>,
        form: &str,
        _: Duration,
    ) -> Result<HttpResponse, TransportError> {
        self.urls.push(url.to_string());
        self.posts
            .push((url.to_string(), bearer.map(String::from), form.to_string()));
        self.script
            .pop_front()
            .unwrap_or(Err(TransportError::Network("script ended".into())))
    }
}

/// A clock that only moves when told to: by `sleep`, or by `tick` on every monotonic read.
pub struct TestClock {
    pub now: Cell<i64>,
    pub mono: Cell<Duration>,
    pub slept: Cell<Duration>,
    pub tick: Cell<Duration>,
}

impl TestClock {
    pub fn new(now: i64) -> Self {
        TestClock {
            now: Cell::new(now),
            mono: Cell::new(Duration::ZERO),
            slept: Cell::new(Duration::ZERO),
            tick: Cell::new(Duration::ZERO),
        }
    }

    pub fn slept(&self) -> Duration {
        self.slept.get()
    }
}

impl Clock for TestClock {
    fn now_unix(&self) -> i64 {
        self.now.get()
    }

    fn monotonic(&self) -> Duration {
        self.mono.set(self.mono.get() + self.tick.get());
        self.mono.get()
    }

    fn sleep(&self, d: Duration) {
        self.mono.set(self.mono.get() + d);
        self.slept.set(self.slept.get() + d);
    }
}

/// A key-value store in memory that can be told to fail the Nth `set`. It refuses keys and values
/// over the portable limits, as the hosts do.
#[derive(Default)]
pub struct MemStore {
    pub map: HashMap<String, Vec<u8>>,
    pub sets: usize,
    pub fail_set_at: Option<usize>,
}

impl KvStore for MemStore {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.sets += 1;
        if self.fail_set_at == Some(self.sets) {
            return Err(StoreError("injected failure".into()));
        }
        crate::env::check_portable(key, value)?;
        self.map.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.map.remove(key);
        Ok(())
    }
}

/// A sink that keeps every accepted record's id, and can be told to refuse the Nth batch.
#[derive(Default)]
pub struct VecSink {
    pub ids: Vec<String>,
    pub batches: usize,
    pub fail_at: Option<usize>,
}

impl RecordSink for VecSink {
    fn write(&mut self, batch: SinkBatch) -> Result<(), SinkError> {
        self.batches += 1;
        if self.fail_at == Some(self.batches) {
            return Err(SinkError::Unavailable("injected failure".into()));
        }
        let text =
            std::str::from_utf8(&batch.ndjson).map_err(|e| SinkError::Rejected(e.to_string()))?;
        let mut n = 0;
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| SinkError::Rejected(e.to_string()))?;
            self.ids
                .push(v["id"].as_str().unwrap_or_default().to_string());
            n += 1;
        }
        assert_eq!(n, batch.count, "batch count matches its lines");
        Ok(())
    }
}

/// Wraps a transport and answers request number `at` (1-based) with the previous answer again,
/// as a server that serves the same page twice would.
pub struct RepeatPrevious<'a> {
    pub inner: &'a mut dyn Transport,
    pub at: usize,
    /// Whether the repeat was served (the test is about nothing otherwise).
    pub fired: bool,
    n: usize,
    last: Option<HttpResponse>,
}

impl<'a> RepeatPrevious<'a> {
    pub fn new(inner: &'a mut dyn Transport, at: usize) -> Self {
        RepeatPrevious {
            inner,
            at,
            fired: false,
            n: 0,
            last: None,
        }
    }
}

impl Transport for RepeatPrevious<'_> {
    fn get(
        &mut self,
        url: &str,
        bearer: &str,
        t: Duration,
    ) -> Result<HttpResponse, TransportError> {
        self.n += 1;
        if self.n == self.at {
            if let Some(last) = self.last.clone() {
                self.fired = true;
                return Ok(last);
            }
        }
        let r = self.inner.get(url, bearer, t)?;
        self.last = Some(r.clone());
        Ok(r)
    }
}
