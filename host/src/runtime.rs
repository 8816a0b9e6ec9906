//! The wasmtime embedding: engine, component cache, linker, per-store state.
//!
//! One `Engine` and one pre-instantiated component per process; a fresh
//! `Store` (and instance) per pass or per HTTP request, so no guest state
//! leaks between passes: everything durable goes through the KV store.

use crate::config::ConfigMap;
use crate::kv::{self, KvStore};
use crate::pass_lock::{self, Busy, LockError, PassLock};
use crate::progress::{GuestLog, Progress};
use crate::sink::{Sink, SinkFailure};
use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
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
    /// The pass's progress line, fed by the HTTP hooks and the sink.
    progress: Progress,
    hooks: ObservedHooks,
}

/// wasmtime-wasi-http's default sending (which honours the guest's request-options timeouts),
/// with each request to Slack and its answer's status shown on the progress line.
struct ObservedHooks {
    progress: Progress,
}

impl wasmtime_wasi_http::WasiHttpHooks for ObservedHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<
                            dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>>
                                + Send,
                        >,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let _ = fut;
        let progress = self.progress.clone();
        let uri = request.uri().clone();
        progress.request(&uri);
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            progress.answered(&uri, res.status().as_u16());
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
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
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
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
        sink.write(&batch.stream, batch.count, batch.ndjson, &batch.batch_key)
            .await
            .map_err(|e| match e {
                SinkFailure::Unavailable(m) => SinkError::Unavailable(m),
                SinkFailure::Rejected(m) => SinkError::Rejected(m),
            })?;
        self.progress.delivered(&batch.stream, batch.count);
        Ok(())
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
    /// Whether a pass draws a progress line (when stderr is a terminal): `run` does.
    show_progress: bool,
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
            show_progress: false,
        })
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// Passes draw a progress line on stderr when it is a terminal ([`crate::progress`]).
    pub fn show_progress(&mut self) {
        self.show_progress = true;
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
        self.new_store_with(Progress::off(), |_| {})
    }

    /// [`Runtime::new_store`], with a last say on the WASI context (tests give it a known
    /// random generator).
    fn new_store_with(
        &self,
        progress: Progress,
        adjust: impl FnOnce(&mut WasiCtxBuilder),
    ) -> Store<HostState> {
        let mut builder = WasiCtx::builder();
        if self.sink.is_none() {
            builder.inherit_stdout();
        } else if progress.is_on() {
            builder.stdout(GuestLog(progress.clone()));
        } else {
            builder.stdout(std::io::stderr());
        }
        if progress.is_on() {
            // Above the progress line, not through it.
            builder.stderr(GuestLog(progress.clone()));
        } else {
            builder.inherit_stderr();
        }
        adjust(&mut builder);
        let wasi = builder.build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            kv: self.kv.clone(),
            config: self.config.clone(),
            sink: self.sink.clone(),
            hooks: ObservedHooks {
                progress: progress.clone(),
            },
            progress,
        };
        Store::new(self.pre.engine(), state)
    }

    /// What a pass holds while it runs. With a SQLite state file: its lock, taken without
    /// waiting, after which the leases of passes that died are cleared ([`pass_lock`]); `Busy`
    /// when a live pass holds it. With Redis: nothing, the leases in the store alone keep one
    /// pass per walk across hosts.
    pub fn guard_pass(&self) -> Result<Option<PassLock>, LockError> {
        match &self.kv {
            KvStore::Sqlite(s) => pass_lock::lock_and_clear_leases(s.path(), &self.kv, unix_now())
                .map(|(l, _)| Some(l)),
            KvStore::Redis(_) | KvStore::Embedded(_) => Ok(None),
        }
    }

    /// One collection pass in its own store, under [`Runtime::guard_pass`].
    pub async fn run_pass(&self, options: &RunOptions) -> anyhow::Result<PassRun> {
        let _guard = match self.guard_pass() {
            Ok(guard) => guard,
            Err(LockError::Busy(busy)) => return Ok(PassRun::Busy(busy)),
            Err(e) => return Err(e.into()),
        };
        let progress = if self.show_progress {
            Progress::on_terminal()
        } else {
            Progress::off()
        };
        let mut store = self.new_store_with(progress.clone(), |_| {});
        let instance = self.pre.instantiate_async(&mut store).await.map_err(wt)?;
        let ran = instance
            .slack_logs_collector_collector()
            .call_run(&mut store, options)
            .await
            .map_err(wt)
            .context("the component failed during the pass (a trap, i.e. a bug in the component)")
            .map(PassRun::Ran);
        progress.finish();
        ran
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

/// How a pass went, from the host's side.
#[derive(Debug)]
pub enum PassRun {
    Ran(PassReport),
    /// Another live process runs a pass on the same state file; this one did not run.
    Busy(Busy),
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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

/// Where a component came from, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Loaded {
    /// Deserialized from the cache.
    Cached,
    /// Compiled now; `cached` says whether the result was written to the cache.
    Compiled { cached: bool },
}

/// Why a cache directory or file is not trusted, if it is not: native code in it runs as this
/// user, so it must be this user's and writable by nobody else. `None` when it is fine.
fn untrusted(meta: &std::fs::Metadata) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Some(format!(
            "it belongs to uid {}, not to this user (uid {me})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => None,
        (group, other) => Some(format!(
            "it is writable by {} (mode {mode:03o})",
            match (group, other) {
                (true, true) => "its group and by others",
                (true, false) => "its group",
                _ => "others",
            }
        )),
    }
}

/// Creates the cache directory (0700) when missing and checks it (following a symbolic link to
/// it, as the end-to-end tests use one: what matters is the directory the files are in).
fn trusted_cache_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    match untrusted(&meta) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// The cached artifact's bytes, read through one open file that was checked first (so the file
/// cannot be swapped between the check and the read). `Ok(None)`: there is none.
fn read_trusted_cache_file(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        // The host writes the artifact by rename, never as a link.
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err("it is a symbolic link".into())
        }
        Err(e) => return Err(e.to_string()),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if let Some(why) = untrusted(&meta) {
        return Err(why);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(Some(bytes))
}

/// Compile once, then deserialize the cached native code on later starts.
fn load_component(
    engine: &Engine,
    wasm_path: &Path,
    cache_dir: &Path,
) -> anyhow::Result<Component> {
    load_component_from_cache(engine, wasm_path, cache_dir).map(|(c, _)| c)
}

fn load_component_from_cache(
    engine: &Engine,
    wasm_path: &Path,
    cache_dir: &Path,
) -> anyhow::Result<(Component, Loaded)> {
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
    // An untrusted directory is not used at all: whoever can write it could swap in native code
    // after we wrote ours. The component is compiled in memory instead, every start.
    let dir_trusted = match trusted_cache_dir(cache_dir) {
        Ok(()) => true,
        Err(why) => {
            crate::log_warn!(
                "not using the compiled-component cache {}: {why}. Native code from it would run as this user, so it must be yours and writable only by you (chmod 700 it, or choose another --state); compiling in memory instead",
                cache_dir.display()
            );
            false
        }
    };
    if dir_trusted {
        match read_trusted_cache_file(&cached) {
            Ok(None) => {}
            Ok(Some(bytes)) => {
                let t = Instant::now();
                // SAFETY: deserialize trusts its input to be wasmtime output. These bytes come
                // from a file this user owns that nobody else can write, in a directory of the
                // same kind, written only by `write_cache` below (`Component::serialize`); and
                // wasmtime still checks its version and engine settings.
                match unsafe { Component::deserialize(engine, &bytes) } {
                    Ok(c) => {
                        crate::log_debug!(
                            "loaded the compiled component from {} in {:.1} ms",
                            cached.display(),
                            t.elapsed().as_secs_f64() * 1e3
                        );
                        return Ok((c, Loaded::Cached));
                    }
                    Err(e) => crate::log_warn!(
                        "ignoring cache file {} ({e}); compiling again",
                        cached.display()
                    ),
                }
            }
            Err(why) => crate::log_warn!(
                "refusing the cached compiled component {}: {why}; native code from it would run as this user. Compiling again and replacing it",
                cached.display()
            ),
        }
    }
    crate::log_info!(
        "compiling {} to native code{}",
        wasm_path.display(),
        if dir_trusted {
            format!(" (once; cached under {})", cache_dir.display())
        } else {
            String::new()
        }
    );
    let t = Instant::now();
    let component = Component::new(engine, &wasm).map_err(wt).with_context(|| {
        format!(
            "{} is not a valid WebAssembly component; rebuild it with `cargo xtask build`",
            wasm_path.display()
        )
    })?;
    crate::log_debug!("compiled in {:.1} s", t.elapsed().as_secs_f64());
    if !dir_trusted {
        return Ok((component, Loaded::Compiled { cached: false }));
    }
    // The cache only saves time: failing to write it is a warning, not an error.
    let written = write_cache(&component, cache_dir, &cached);
    if let Err(e) = &written {
        crate::log_warn!(
            "could not cache the compiled component in {}: {e:#}",
            cache_dir.display()
        );
    }
    Ok((
        component,
        Loaded::Compiled {
            cached: written.is_ok(),
        },
    ))
}

fn write_cache(component: &Component, dir: &Path, path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let bytes = component.serialize().map_err(wt)?;
    // Write then rename, so a concurrent start never reads half a file; the rename also
    // replaces a refused file (the directory is ours).
    let tmp: PathBuf = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
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

    /// A "random" generator that gives only this byte.
    struct Constant(u8);

    impl rand_core::TryRng for Constant {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(u32::from_ne_bytes([self.0; 4]))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(u64::from_ne_bytes([self.0; 8]))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(self.0);
            Ok(())
        }
    }

    /// A pass's lease owner id comes from `wasi:random`, the host's secure generator (issue #13
    /// item 7), not from std's hasher seeds: with a generator that gives only 0xa5, every walk's
    /// lease names the owner `pass-a5a5…`. Needs the built component (`cargo xtask test`).
    #[test]
    fn a_pass_takes_its_lease_owner_id_from_wasi_random() {
        let component = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/wasm32-wasip2/release/slack_logs_collector.wasm");
        if !component.exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} is missing: run `cargo xtask test`",
                component.display()
            );
            eprintln!("NOTICE: skipped, {} is not built", component.display());
            return;
        }
        let dir = scratch("random");
        let kv = KvStore::open(&kv::StateSpec::Sqlite(dir.join("state.db"))).unwrap();
        let config: ConfigMap = [("streams", "audit,access"), ("synthetic_data", "true")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sink =
            crate::sink::Sink::new(&crate::sink::SinkSpec::File(dir.join("out.ndjson")), None)
                .unwrap();
        let rt = Runtime::new(&component, &dir.join("cache"), kv, config, Arc::new(sink)).unwrap();
        let mut store = rt.new_store_with(Progress::off(), |b| {
            b.secure_random(Constant(0xa5));
        });
        let report = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let instance = rt.pre.instantiate_async(&mut store).await.map_err(wt)?;
                instance
                    .slack_logs_collector_collector()
                    .call_run(
                        &mut store,
                        &RunOptions {
                            streams: Vec::new(),
                            max_run_seconds: None,
                        },
                    )
                    .await
                    .map_err(wt)
            })
            .unwrap();
        assert_eq!(report.streams.len(), 2, "{report:?}");
        for stream in [
            slack_logs_core::Stream::Audit,
            slack_logs_core::Stream::Access,
        ] {
            let key = slack_logs_core::keys::walk_key(
                stream,
                None,
                slack_logs_core::keys::WalkLeaf::Lease,
            );
            let bytes = rt.kv.get(kv::DEFAULT_STORE, &key).unwrap().expect(&key);
            let lease: slack_logs_core::lease::LeaseRecord =
                serde_json::from_slice(&bytes).unwrap();
            assert_eq!(lease.owner, format!("pass-{}", "a5".repeat(16)), "{key}");
        }
    }

    /// The smallest component there is: the header alone. It compiles in milliseconds.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "slack-logs-cache-test-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn cwasm_files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_cache_is_used_when_it_is_ours() {
        let engine = Engine::new(&Config::new()).unwrap();
        let dir = scratch("ours");
        let wasm = dir.join("c.wasm");
        std::fs::write(&wasm, EMPTY_COMPONENT).unwrap();
        let cache = dir.join("cache");
        let (_, first) = load_component_from_cache(&engine, &wasm, &cache).unwrap();
        assert_eq!(first, Loaded::Compiled { cached: true });
        let mode = std::fs::metadata(&cache).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let (_, second) = load_component_from_cache(&engine, &wasm, &cache).unwrap();
        assert_eq!(second, Loaded::Cached);
        // Through a symbolic link to a directory of ours, as the end-to-end tests share one.
        let link = dir.join("link");
        std::os::unix::fs::symlink(&cache, &link).unwrap();
        let (_, third) = load_component_from_cache(&engine, &wasm, &link).unwrap();
        assert_eq!(third, Loaded::Cached);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A directory that group or others can write is not used: nothing is read from it and
    /// nothing written to it, even a file that would otherwise be fine.
    #[test]
    fn a_cache_directory_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let engine = Engine::new(&Config::new()).unwrap();
        let dir = scratch("shared-dir");
        let wasm = dir.join("c.wasm");
        std::fs::write(&wasm, EMPTY_COMPONENT).unwrap();
        let cache = dir.join("cache");
        load_component_from_cache(&engine, &wasm, &cache).unwrap();
        assert_eq!(cwasm_files(&cache).len(), 1);
        for mode in [0o777, 0o770, 0o702] {
            std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(mode)).unwrap();
            let (_, loaded) = load_component_from_cache(&engine, &wasm, &cache).unwrap();
            assert_eq!(loaded, Loaded::Compiled { cached: false }, "mode {mode:o}");
            let why = trusted_cache_dir(&cache).unwrap_err();
            assert!(
                why.contains("writable by") && why.contains(&format!("{mode:03o}")),
                "{why}"
            );
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // As root (as CI runs): a directory of `nobody`'s, mode 700, holding a good artifact.
            std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
            assert_eq!(
                load_component_from_cache(&engine, &wasm, &cache).unwrap().1,
                Loaded::Cached
            );
            std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
            let why = trusted_cache_dir(&cache).unwrap_err();
            assert!(why.contains("uid 65534"), "{why}");
            let (_, loaded) = load_component_from_cache(&engine, &wasm, &cache).unwrap();
            assert_eq!(loaded, Loaded::Compiled { cached: false }, "not used");
        } else {
            eprintln!(
                "NOTICE: not root; the refusal of another user's cache directory is not tested"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A cached artifact that is not this user's (planted by another local user), or is a link,
    /// is not loaded: the component is compiled and the file replaced by ours.
    #[test]
    fn a_cache_file_of_another_user_or_a_link_is_refused() {
        let engine = Engine::new(&Config::new()).unwrap();
        let dir = scratch("planted-file");
        let wasm = dir.join("c.wasm");
        std::fs::write(&wasm, EMPTY_COMPONENT).unwrap();
        let cache = dir.join("cache");
        load_component_from_cache(&engine, &wasm, &cache).unwrap();
        let file = cwasm_files(&cache).pop().unwrap();

        // A link in place of the file, even to a good artifact.
        let elsewhere = dir.join("elsewhere.cwasm");
        std::fs::rename(&file, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        assert!(read_trusted_cache_file(&file)
            .unwrap_err()
            .contains("symbolic link"));
        let (_, loaded) = load_component_from_cache(&engine, &wasm, &cache).unwrap();
        assert_eq!(loaded, Loaded::Compiled { cached: true });
        assert!(
            !std::fs::symlink_metadata(&file)
                .unwrap()
                .file_type()
                .is_symlink(),
            "replaced"
        );

        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // As root (as CI runs), plant a file of `nobody`'s, bytes that would load fine.
            std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
            let why = read_trusted_cache_file(&file).unwrap_err();
            assert!(why.contains("uid 65534"), "{why}");
            let (_, loaded) = load_component_from_cache(&engine, &wasm, &cache).unwrap();
            assert_eq!(
                loaded,
                Loaded::Compiled { cached: true },
                "not loaded, compiled"
            );
            assert_eq!(
                std::fs::metadata(&file).unwrap().uid(),
                0,
                "and replaced by ours"
            );
            let (_, loaded) = load_component_from_cache(&engine, &wasm, &cache).unwrap();
            assert_eq!(loaded, Loaded::Cached);
        } else {
            eprintln!(
                "NOTICE: not root, so no file of another user can be planted; that case is skipped"
            );
        }
        // A file others may write is refused the same way.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
            assert!(read_trusted_cache_file(&file)
                .unwrap_err()
                .contains("mode 666"));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

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
