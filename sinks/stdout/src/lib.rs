//! `sink-stdout`: a sink component for the slack-logs collector that writes each batch to stdout.
//!
//! It exports `slack-logs:collector/sink@0.1.0` (world `sink-component`) and is plugged into the
//! collector's `sink` import, as Spin does with `[component.collector.dependencies]`. Under
//! `spin up` its stdout is the component's, so records land in `.spin/logs/collector_stdout.txt`;
//! in the `slack-logs` host with `--sink none` they land on the host's stdout.
//!
//! It is not a durable store: `ok` means the bytes were written and flushed to the stdout stream,
//! which is all stdout can promise. Whatever reads stdout owns durability from there. It needs no
//! configuration and no capability, so the manifest grants it none.

#[cfg(target_arch = "wasm32")]
mod component {
    use std::io::Write;

    mod bindings {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "slack-logs:collector/sink-component",
            generate_all,
        });
    }

    use bindings::exports::slack_logs::collector::sink::{Guest, SinkBatch, SinkError};

    struct StdoutSink;

    bindings::export!(StdoutSink with_types_in bindings);

    impl Guest for StdoutSink {
        fn write(batch: SinkBatch) -> Result<(), SinkError> {
            super::check_batch(&batch.ndjson).map_err(SinkError::Rejected)?;
            // One lock for the whole batch, so lines of two batches never interleave.
            let mut out = std::io::stdout().lock();
            out.write_all(&batch.ndjson)
                .and_then(|()| out.flush())
                .map_err(|e| SinkError::Unavailable(format!("sink-stdout: writing to stdout: {e}")))
        }
    }
}

/// A batch must be whole NDJSON lines: a batch without its final newline would glue its last
/// record to the next batch's first one and corrupt both for whatever parses stdout.
pub fn check_batch(ndjson: &[u8]) -> Result<(), String> {
    if ndjson.is_empty() || ndjson.ends_with(b"\n") {
        Ok(())
    } else {
        Err(
            "sink-stdout: the batch does not end with a newline, so it is not whole NDJSON lines"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::check_batch;

    #[test]
    fn whole_lines_only() {
        assert!(check_batch(b"").is_ok());
        assert!(check_batch(b"{\"id\":\"a\"}\n{\"id\":\"b\"}\n").is_ok());
        assert!(check_batch(b"{\"id\":\"a\"}").is_err());
    }
}
