//! Injected faults: which request gets what.

use std::collections::HashMap;
use std::time::Duration;

/// A failure to serve instead of the real answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with body `ratelimited` (Web API) / `rate_limited` (audit) and the given
    /// `Retry-After` header value (any string, even absurd; `None` = no header).
    RateLimited { retry_after: Option<String> },
    /// This HTTP status with a JSON `internal_error` / `service_unavailable` body.
    ServerError(u16),
    /// `fatal_error`: Web API with `SimConfig::web_fatal_error_status` (500 by default), audit 500.
    FatalError,
    /// `invalid_cursor` (Web API: 200; audit: 400), whatever the request carried.
    InvalidCursor,
    /// Read the request, then send nothing for this long, then close the connection.
    Hang(Duration),
    /// HTTP 200 with a truncated JSON body.
    MalformedBody,
    /// HTTP 502 with an HTML page, as a load balancer would send.
    HtmlErrorPage,
    /// Anything else: exact status, content type, extra headers and body
    /// (e.g. a 429 with an empty body, or a 200 `{"ok":false,"error":"ratelimited"}`).
    Raw {
        status: u16,
        content_type: Option<String>,
        headers: Vec<(String, String)>,
        body: String,
    },
}

#[derive(Default)]
pub(crate) struct FaultPlan {
    /// Absolute request number → fault.
    scheduled: HashMap<usize, Fault>,
    /// (every, base request number, fault)
    every: Option<(usize, usize, Fault)>,
}

impl FaultPlan {
    pub(crate) fn schedule(&mut self, request_no: usize, fault: Fault) {
        self.scheduled.insert(request_no, fault);
    }

    pub(crate) fn set_every(&mut self, every: usize, base: usize, fault: Fault) {
        self.every = if every == 0 {
            None
        } else {
            Some((every, base, fault))
        };
    }

    pub(crate) fn take(&mut self, request_no: usize) -> Option<Fault> {
        if let Some(f) = self.scheduled.remove(&request_no) {
            return Some(f);
        }
        match &self.every {
            Some((every, base, fault))
                if request_no > *base && (request_no - base).is_multiple_of(*every) =>
            {
                Some(fault.clone())
            }
            _ => None,
        }
    }
}
