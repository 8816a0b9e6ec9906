//! The wasmtime embedding: engine, component cache, linker, per-store state.
//!
//! One `Engine` and one pre-instantiated component per process; a fresh
//! `Store` (and instance) per pass or per HTTP request, so no guest state
//! leaks between passes: everything durable goes through the KV store.

use crate::config::ConfigMap;
use crate::kv::{self, KvStore};
use crate::sink::{Sink, SinkFailure};
use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Pinned in host/Cargo.toml (`=48.0.8`); part of the cache key so a host
/// built against another wasmtime never tries a stale artifact.
const WASMTIME_VERSION: &str = "48.0.8";

// Bindings for the collector world, from the same WIT files the component is
// built from. WASI interfaces that wasmtime-wasi(-http) already implement are
// mapped onto their bindings; only keyvalue draft2, config draft-2024-09-27,
// the sink and the exports are generated here.
wasmtime::component::bindgen!({
    path: "../wit",
    world: "slack-logs:collector/collector-component",
    imports: {
        // The HTTP sink waits on the network with retries: do it without blocking a thread.
        "slack-logs:collector/sink.write": async,
    },
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:keyvalue/store.bucket": crate::kv::Bucket,
    },
    require_store_data_send: true,
});

pub use exports::slack_logs::collector::collector::{
    Outcome, PassReport, RunOptions, StreamStatus,
};
use slack_logs::collector::sink::{self as wit_sink, SinkBatch, SinkError};
use wasi::config::store as wit_config;
use wasi::keyvalue::store as wit_kv;

/// Convert a wasmtime error (its own type in wasmtime 48) into anyhow, keeping
/// the chain (trap message and wasm backtrace).
pub fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow::Error::from_boxed(e.into_boxed_dyn_error())
}

/// Everything one store (one pass, one HTTP request) can reach.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    kv: KvStore,
    config: Arc<ConfigMap>,
    sink: Arc<Sink>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        // Default hooks: default_send_request honours the guest's
        // connect / first-byte / between-bytes timeouts from request-options.
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

fn kv_error(e: kv::KvError) -> wit_kv::Error {
    wit_kv::Error::Other(e.to_string())
}

impl wit_kv::Host for HostState {
    fn open(&mut self, identifier: String) -> Result<Resource<kv::Bucket>, wit_kv::Error> {
        if identifier != kv::DEFAULT_STORE {
            return Err(wit_kv::Error::NoSuchStore);
        }
        self.table
            .push(kv::Bucket { name: identifier })
            .map_err(|e| wit_kv::Error::Other(e.to_string()))
    }
}

impl HostState {
    fn bucket(&self, b: &Resource<kv::Bucket>) -> Result<String, wit_kv::Error> {
        self.table
            .get(b)
            .map(|b| b.name.clone())
            .map_err(|e| wit_kv::Error::Other(e.to_string()))
    }
}

impl wit_kv::HostBucket for HostState {
    fn get(
        &mut self,
        b: Resource<kv::Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, wit_kv::Error> {
        let bucket = self.bucket(&b)?;
        self.kv.get(&bucket, &key).map_err(kv_error)
    }

    fn set(
        &mut self,
        b: Resource<kv::Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), wit_kv::Error> {
        let bucket = self.bucket(&b)?;
        self.kv.set(&bucket, &key, &value).map_err(kv_error)
    }

    fn delete(&mut self, b: Resource<kv::Bucket>, key: String) -> Result<(), wit_kv::Error> {
        let bucket = self.bucket(&b)?;
        self.kv.delete(&bucket, &key).map_err(kv_error)
    }

    fn exists(&mut self, b: Resource<kv::Bucket>, key: String) -> Result<bool, wit_kv::Error> {
        let bucket = self.bucket(&b)?;
        self.kv.exists(&bucket, &key).map_err(kv_error)
    }

    fn list_keys(
        &mut self,
        b: Resource<kv::Bucket>,
        cursor: Option<String>,
    ) -> Result<wit_kv::KeyResponse, wit_kv::Error> {
        let bucket = self.bucket(&b)?;
        let (keys, cursor) = self
            .kv
            .list_keys(&bucket, cursor.as_deref(), kv::LIST_PAGE)
            .map_err(kv_error)?;
        Ok(wit_kv::KeyResponse { keys, cursor })
    }

    fn drop(&mut self, b: Resource<kv::Bucket>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl wit_config::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<String>, wit_config::Error> {
        Ok(self.config.get(&key).cloned())
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, wit_config::Error> {
        Ok(self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl wit_sink::Host for HostState {
    async fn write(&mut self, batch: SinkBatch) -> Result<(), SinkError> {
        let sink = self.sink.clone();
        sink.write(&batch.stream, batch.count, batch.ndjson)
            .await
            .map_err(|e| match e {
                SinkFailure::Unavailable(m) => SinkError::Unavailable(m),
                SinkFailure::Rejected(m) => SinkError::Rejected(m),
            })
    }
}

/// Every import of the collector world, in one place.
fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    // wasi:cli/io/clocks/random/filesystem/sockets, which Rust std pulls in.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // wasi:http/types + outgoing-handler; serves the component's @0.2.6 imports by semver.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wit_kv::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    wit_config::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    wit_sink::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// The loaded component and the host services its stores share.
pub struct Runtime {
    pre: CollectorComponentPre<HostState>,
    kv: KvStore,
    config: Arc<ConfigMap>,
    sink: Arc<Sink>,
}

impl Runtime {
    pub fn new(
        component: &Path,
        cache_dir: &Path,
        kv: KvStore,
        config: ConfigMap,
        sink: Arc<Sink>,
    ) -> anyhow::Result<Runtime> {
        let engine = Engine::new(&Config::new()).map_err(wt)?;
        let path = component;
        let component = load_component(&engine, path, cache_dir)?;
        check_sink_choice(&engine, &component, path, &sink)?;
        let linker = build_linker(&engine).map_err(wt)?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(CollectorComponentPre::new)
            .map_err(wt)
            .context(
                "the component does not fit this host (wrong imports or exports); \
                 rebuild both from the same checkout with `cargo xtask build`",
            )?;
        Ok(Runtime {
            pre,
            kv,
            config: Arc::new(config),
            sink,
        })
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    pub fn pre(&self) -> &CollectorComponentPre<HostState> {
        &self.pre
    }

    /// A fresh store. The guest's stdout goes to our stderr: stdout carries
    /// only NDJSON records (stdout sink), and a stray guest print must not
    /// corrupt it. With `--sink none` the component's own sink writes the
    /// records (a composed stdout sink), so its stdout is ours.
    pub fn new_store(&self) -> Store<HostState> {
        let mut builder = WasiCtx::builder();
        if self.sink.is_none() {
            builder.inherit_stdout();
        } else {
            builder.stdout(std::io::stderr());
        }
        let wasi = builder.inherit_stderr().build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            kv: self.kv.clone(),
            config: self.config.clone(),
            sink: self.sink.clone(),
        };
        Store::new(self.pre.engine(), state)
    }

    /// One collection pass in its own store.
    pub async fn run_pass(&self, options: &RunOptions) -> anyhow::Result<PassReport> {
        let mut store = self.new_store();
        let instance = self.pre.instantiate_async(&mut store).await.map_err(wt)?;
        instance
            .slack_logs_collector_collector()
            .call_run(&mut store, options)
            .await
            .map_err(wt)
            .context("the component failed during the pass (a trap, i.e. a bug in the component)")
    }

    pub async fn status(&self) -> anyhow::Result<Vec<StreamStatus>> {
        let mut store = self.new_store();
        let instance = self.pre.instantiate_async(&mut store).await.map_err(wt)?;
        instance
            .slack_logs_collector_collector()
            .call_status(&mut store)
            .await
            .map_err(wt)
            .context(
                "the component failed reading the status (a trap, i.e. a bug in the component)",
            )
    }
}

/// Whether the component imports the host's sink, or was composed with a sink component of its
/// own (Spin's `[component.collector.dependencies]`, or `wac plug`).
fn imports_sink(engine: &Engine, component: &Component) -> bool {
    component
        .component_type()
        .imports(engine)
        .any(|(name, _)| name.starts_with("slack-logs:collector/sink@"))
}

/// `--sink` must match the component: a composed component has no sink import to give records to
/// the host's sink, and an uncomposed one under `--sink none` would have nowhere to put them.
/// Either mismatch would lose every record quietly, so it stops here with what to do.
fn check_sink_choice(
    engine: &Engine,
    component: &Component,
    path: &Path,
    sink: &Sink,
) -> anyhow::Result<()> {
    match (imports_sink(engine, component), sink.is_none()) {
        (true, true) => anyhow::bail!(
            "--sink none is for a component composed with its own sink, but {} imports \
             slack-logs:collector/sink; choose --sink stdout, file:PATH or http:URL",
            path.display()
        ),
        (false, false) => anyhow::bail!(
            "{} brings its own sink (it was composed with a sink component, as Spin does with \
             a dependency); run it with --sink none, which passes its stdout through",
            path.display()
        ),
        _ => Ok(()),
    }
}

/// Cache file name: the .wasm bytes, the wasmtime version and the engine's
/// compilation settings; any change gives a new name.
fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let mut h = Sha256::new();
    h.update(WASMTIME_VERSION.as_bytes());
    h.update(engine_hash.finish().to_le_bytes());
    h.update(wasm);
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compile once, then deserialize the cached native code on later starts.
fn load_component(
    engine: &Engine,
    wasm_path: &Path,
    cache_dir: &Path,
) -> anyhow::Result<Component> {
    let wasm = std::fs::read(wasm_path)
        .with_context(|| format!("cannot read the component {}", wasm_path.display()))?;
    // Check the header first: a wrong file deserves a plain message, not a parser dump.
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => {}
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => anyhow::bail!(
            "{} is a core WebAssembly module, not a component; build the component with `cargo xtask build`",
            wasm_path.display()
        ),
        _ => anyhow::bail!(
            "{} is not a WebAssembly component; build it with `cargo xtask build`",
            wasm_path.display()
        ),
    }
    let cached = cache_dir.join(format!("{}.cwasm", cache_key(engine, &wasm)));
    if cached.is_file() {
        let t = Instant::now();
        // SAFETY: deserialize trusts its input to be wasmtime output. This file
        // is written only below, by `Component::serialize`, into an owner-only
        // directory, and wasmtime still checks its version and engine settings.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(c) => {
                crate::log_debug!(
                    "loaded the compiled component from {} in {:.1} ms",
                    cached.display(),
                    t.elapsed().as_secs_f64() * 1e3
                );
                return Ok(c);
            }
            Err(e) => crate::log_warn!(
                "ignoring cache file {} ({e}); compiling again",
                cached.display()
            ),
        }
    }
    crate::log_info!(
        "compiling {} to native code (once; cached under {})",
        wasm_path.display(),
        cache_dir.display()
    );
    let t = Instant::now();
    let component = Component::new(engine, &wasm).map_err(wt).with_context(|| {
        format!(
            "{} is not a valid WebAssembly component; rebuild it with `cargo xtask build`",
            wasm_path.display()
        )
    })?;
    crate::log_debug!("compiled in {:.1} s", t.elapsed().as_secs_f64());
    // The cache only saves time: failing to write it is a warning, not an error.
    if let Err(e) = write_cache(&component, cache_dir, &cached) {
        crate::log_warn!(
            "could not cache the compiled component in {}: {e:#}",
            cache_dir.display()
        );
    }
    Ok(component)
}

fn write_cache(component: &Component, dir: &Path, path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let bytes = component.serialize().map_err(wt)?;
    // Write then rename, so a concurrent start never reads half a file.
    let tmp: PathBuf = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // Artifacts of older builds of the component are dead weight (tens of MB each).
    for entry in std::fs::read_dir(dir)?.flatten() {
        let p = entry.path();
        if p != path && p.extension().is_some_and(|e| e == "cwasm") {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linker_builds_and_cache_key_tracks_bytes() {
        let engine = Engine::new(&Config::new()).unwrap();
        build_linker(&engine).unwrap();
        let a = cache_key(&engine, b"\0asm one");
        assert_eq!(a, cache_key(&engine, b"\0asm one"));
        assert_ne!(a, cache_key(&engine, b"\0asm two"));
        assert_eq!(a.len(), 32);
    }
}
