//! The key-value store behind `wasi:keyvalue/store@0.2.0-draft2`: one SQLite file by default,
//! or a Redis server (`--state redis://…`, [`crate::kv_redis`]) that several hosts share.
//!
//! The component keeps its checkpoints here, so durability matters more than
//! speed: the SQLite file runs WAL with `synchronous=FULL`, and every `set`/`delete` is its own
//! committed transaction, so a killed host never leaves a torn value.

use rusqlite::{params, Connection, OptionalExtension};
use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::kv_redis::{RedisError, RedisStore, RedisUrl};

/// The only store name the host serves; it is Spin's default store, so the
/// component opens the same name under both hosts.
pub const DEFAULT_STORE: &str = "default";

/// Keys returned per `list-keys` call.
pub const LIST_PAGE: usize = 1000;

/// The rep of a `bucket` resource: which store it was opened as.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
}

#[derive(Debug)]
pub enum KvError {
    /// Creating or opening the state file or its directory failed.
    Open { path: PathBuf, message: String },
    /// A read or write on an open store failed.
    Sqlite(rusqlite::Error),
    /// The Redis store failed (its message names the server, never the password).
    Redis(RedisError),
    /// `--state` names a URL scheme the host has no backend for.
    UnknownScheme(String),
    /// A key or value over the portable limits (`slack_logs_core::env`), refused here as the
    /// smallest hosted store would refuse it, so what works in this host works there too.
    OverLimit(slack_logs_core::env::StoreError),
    /// An embedder's [`StateStore`] failed; its own words.
    Embedded(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::Open { path, message } => write!(
                f,
                "cannot open the state store {}: {message} (choose another place with --state PATH)",
                path.display()
            ),
            KvError::Sqlite(e) => write!(f, "state store error: {e}"),
            KvError::Embedded(e) => write!(f, "state store error: {e}"),
            KvError::Redis(e) => e.fmt(f),
            KvError::UnknownScheme(scheme) => write!(
                f,
                "--state: unsupported URL scheme `{scheme}://`; give a file path (SQLite), \
                 redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], or rediss://… for Redis over TLS"
            ),
            KvError::OverLimit(e) => write!(
                f,
                "{e}; hosted Spin stores (Fermyon Cloud, Akamai Functions) refuse it too"
            ),
        }
    }
}

impl std::error::Error for KvError {}

impl From<RedisError> for KvError {
    fn from(e: RedisError) -> Self {
        KvError::Redis(e)
    }
}

impl From<rusqlite::Error> for KvError {
    fn from(e: rusqlite::Error) -> Self {
        KvError::Sqlite(e)
    }
}

/// Which backend holds the state, from `--state` (or `SLACK_LOGS_STATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateSpec {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A Redis database.
    Redis(RedisUrl),
}

impl StateSpec {
    /// `redis://…` is Redis; any other `scheme://` is refused rather than taken for a file name
    /// (a typo such as `rediss://` or `reddis://` would otherwise create a file of that name);
    /// everything else is a SQLite path.
    pub fn parse(text: &str) -> Result<StateSpec, KvError> {
        match text.split_once("://") {
            Some((scheme, _))
                if scheme.eq_ignore_ascii_case("redis")
                    || scheme.eq_ignore_ascii_case("rediss") =>
            {
                Ok(StateSpec::Redis(RedisUrl::parse(text)?))
            }
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                Err(KvError::UnknownScheme(scheme.to_owned()))
            }
            _ => Ok(StateSpec::Sqlite(PathBuf::from(text))),
        }
    }

    /// Where the compiled component is cached: beside a state file, or under `default_dir`
    /// (the default state's directory) for a store that is not a file.
    pub fn cache_dir(&self, default_dir: &Path) -> PathBuf {
        match self {
            StateSpec::Sqlite(path) => path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join("cache"),
            StateSpec::Redis(_) => default_dir.join("cache"),
        }
    }
}

/// For messages: the path, or the URL without its password.
impl fmt::Display for StateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateSpec::Sqlite(path) => write!(f, "{}", path.display()),
            StateSpec::Redis(url) => url.fmt(f),
        }
    }
}

/// The state store of the process, whichever backend; cloned into every wasmtime store.
#[derive(Clone)]
pub enum KvStore {
    Sqlite(SqliteStore),
    Redis(Arc<RedisStore>),
    /// A program's own store ([`crate::embed`]).
    Embedded(Arc<dyn StateStore>),
}

/// A key-value store a program embedding the collector brings ([`crate::embed`]). The component
/// uses one bucket, so this is one flat map of keys to bytes. Keys and values over the portable
/// limits are refused before `set` is called. Checkpoints are written after the sink accepted
/// their records: `set` must be durable when it returns for the exactly-once promise to hold.
pub trait StateStore: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), String>;
    /// Removes `key`; absent is fine.
    fn delete(&self, key: &str) -> Result<(), String>;
    /// Every key, in any order.
    fn keys(&self) -> Result<Vec<String>, String>;
}

/// A [`StateStore`] in memory: for tests and examples (everything is gone when it is dropped,
/// so the next process starts over).
#[derive(Default)]
pub struct MemoryStore(Mutex<std::collections::BTreeMap<String, Vec<u8>>>);

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Vec<u8>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StateStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.map().get(key).cloned())
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.map().insert(key.to_owned(), value.to_vec());
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), String> {
        self.map().remove(key);
        Ok(())
    }
    fn keys(&self) -> Result<Vec<String>, String> {
        Ok(self.map().keys().cloned().collect())
    }
}

impl KvStore {
    pub fn open(spec: &StateSpec) -> Result<KvStore, KvError> {
        Ok(match spec {
            StateSpec::Sqlite(path) => KvStore::Sqlite(SqliteStore::open(path)?),
            StateSpec::Redis(url) => KvStore::Redis(Arc::new(RedisStore::open(url.clone())?)),
        })
    }

    /// For messages: the file, or the Redis URL without its password.
    pub fn describe(&self) -> String {
        match self {
            KvStore::Sqlite(s) => s.path().display().to_string(),
            KvStore::Redis(r) => r.url().to_string(),
            KvStore::Embedded(_) => "the embedding program's store".to_owned(),
        }
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            KvStore::Sqlite(s) => s.get(bucket, key),
            KvStore::Redis(r) => Ok(r.get(bucket, key)?),
            KvStore::Embedded(e) => e.get(key).map_err(KvError::Embedded),
        }
    }

    /// Refuses a key or value over the portable limits before either backend sees it.
    pub fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        slack_logs_core::env::check_portable(key, value).map_err(KvError::OverLimit)?;
        match self {
            KvStore::Sqlite(s) => s.set(bucket, key, value),
            KvStore::Redis(r) => Ok(r.set(bucket, key, value)?),
            KvStore::Embedded(e) => e.set(key, value).map_err(KvError::Embedded),
        }
    }

    pub fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        match self {
            KvStore::Sqlite(s) => s.delete(bucket, key),
            KvStore::Redis(r) => Ok(r.delete(bucket, key)?),
            KvStore::Embedded(e) => e.delete(key).map_err(KvError::Embedded),
        }
    }

    pub fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        match self {
            KvStore::Sqlite(s) => s.exists(bucket, key),
            KvStore::Redis(r) => Ok(r.exists(bucket, key)?),
            KvStore::Embedded(e) => Ok(e.get(key).map_err(KvError::Embedded)?.is_some()),
        }
    }

    /// Keys after `cursor` in key order, at most `limit`; the returned cursor is the last key of
    /// a full page, `None` when there are no more. Both backends page the same way.
    pub fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), KvError> {
        match self {
            KvStore::Sqlite(s) => s.list_keys(bucket, cursor, limit),
            KvStore::Redis(r) => Ok(r.list_keys(bucket, cursor, limit)?),
            KvStore::Embedded(e) => {
                let mut keys = e.keys().map_err(KvError::Embedded)?;
                keys.sort_unstable();
                let mut page: Vec<String> = keys
                    .into_iter()
                    .filter(|k| cursor.is_none_or(|c| k.as_str() > c))
                    .take(limit.saturating_add(1))
                    .collect();
                // A cursor only when more keys follow, as the other backends page.
                let next = if page.len() > limit {
                    page.truncate(limit);
                    page.last().cloned()
                } else {
                    None
                };
                Ok((page, next))
            }
        }
    }
}

/// A handle to the SQLite store, shared by every store/instance of the process.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Open (creating if needed) the store at `path`. A new directory gets mode
    /// 0700 and a new file 0600: the checkpoints are not secret, but the
    /// directory also holds the compiled component and nobody else needs either.
    pub fn open(path: &Path) -> Result<SqliteStore, KvError> {
        let open_err = |message: String| KvError::Open {
            path: path.to_owned(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| open_err(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        // Create the file ourselves so SQLite never creates it with umask permissions.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| open_err(e.to_string()))?;
        let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        let setup = || -> Result<(), String> {
            let sql = |e: rusqlite::Error| e.to_string();
            // Another slack-logs process (e.g. `status` during `run --every`) may hold the lock briefly.
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .map_err(sql)?;
            let mode: String = conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(sql)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(format!("cannot switch to WAL (journal_mode stayed {mode})"));
            }
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(sql)?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS kv (
                     bucket TEXT NOT NULL,
                     key    TEXT NOT NULL,
                     value  BLOB NOT NULL,
                     PRIMARY KEY (bucket, key)
                 )",
            )
            .map_err(sql)
        };
        setup().map_err(|e| open_err(format!("not a usable SQLite database: {e}")))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written
        // (each statement is atomic), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT value FROM kv WHERE bucket = ?1 AND key = ?2")?;
        Ok(stmt
            .query_row(params![bucket, key], |r| r.get(0))
            .optional()?)
    }

    /// Autocommit: the statement is its own transaction, durable on return.
    pub fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "INSERT INTO kv (bucket, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value",
        )?;
        stmt.execute(params![bucket, key, value])?;
        Ok(())
    }

    pub fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("DELETE FROM kv WHERE bucket = ?1 AND key = ?2")?;
        stmt.execute(params![bucket, key])?;
        Ok(())
    }

    pub fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT 1 FROM kv WHERE bucket = ?1 AND key = ?2")?;
        Ok(stmt.exists(params![bucket, key])?)
    }

    /// Keys after `cursor` in key order, at most `limit`; the returned cursor
    /// is the last key of a full page, `None` when there are no more.
    pub fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), KvError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT key FROM kv WHERE bucket = ?1 AND (?2 IS NULL OR key > ?2)
             ORDER BY key LIMIT ?3",
        )?;
        // Ask for one more than the page to know whether another page exists.
        let keys = stmt
            .query_map(params![bucket, cursor, (limit + 1) as i64], |r| {
                r.get::<_, String>(0)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if keys.len() > limit {
            let mut keys = keys;
            keys.truncate(limit);
            let next = keys.last().cloned();
            Ok((keys, next))
        } else {
            Ok((keys, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "slack-logs-kv-test-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn state_spec_tells_files_from_redis_urls() {
        assert_eq!(
            StateSpec::parse(".slack-logs/state.db").unwrap(),
            StateSpec::Sqlite(".slack-logs/state.db".into())
        );
        assert_eq!(
            StateSpec::parse("/var/lib/slack-logs/state.db").unwrap(),
            StateSpec::Sqlite("/var/lib/slack-logs/state.db".into())
        );
        let spec = StateSpec::parse("redis://:pw@127.0.0.1:6380/1").unwrap();
        assert!(matches!(&spec, StateSpec::Redis(u) if u.port == 6380 && u.db == 1));
        assert_eq!(spec.to_string(), "redis://:***@127.0.0.1:6380/1");
        assert_eq!(
            spec.cache_dir(Path::new(".slack-logs")),
            PathBuf::from(".slack-logs/cache")
        );
        assert_eq!(
            StateSpec::parse("/x/state.db")
                .unwrap()
                .cache_dir(Path::new(".slack-logs")),
            PathBuf::from("/x/cache")
        );
        let e = StateSpec::parse("reddis://h:1").unwrap_err();
        assert!(
            matches!(&e, KvError::UnknownScheme(s) if s == "reddis"),
            "{e}"
        );
        assert!(e.to_string().contains("redis://"), "{e}");
        let spec = StateSpec::parse("rediss://user:pw@h:6380/1").unwrap();
        assert!(matches!(&spec, StateSpec::Redis(u) if u.tls && u.port == 6380));
        assert_eq!(spec.to_string(), "rediss://user:***@h:6380/1");
    }

    /// The portable limits hold for both backends, whatever the backend itself would take.
    #[test]
    fn keys_and_values_over_the_portable_limits_are_refused() {
        use slack_logs_core::env::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
        let dir = temp_dir("limits");
        let mut stores = vec![KvStore::open(&StateSpec::Sqlite(dir.join("state.db"))).unwrap()];
        let server = crate::kv_redis::tests::RedisServer::start(&[]);
        if let Some(server) = &server {
            stores.push(KvStore::open(&StateSpec::Redis(server.url(0))).unwrap());
        }
        for kv in &stores {
            let longest = "k".repeat(MAX_KEY_BYTES);
            kv.set("default", &longest, b"x").unwrap();
            kv.set("default", "big", &vec![7u8; MAX_VALUE_BYTES])
                .unwrap();
            assert_eq!(
                kv.get("default", "big").unwrap().map(|v| v.len()),
                Some(MAX_VALUE_BYTES)
            );

            let e = kv
                .set("default", &"k".repeat(MAX_KEY_BYTES + 1), b"x")
                .unwrap_err();
            assert!(matches!(e, KvError::OverLimit(_)), "{e}");
            assert!(e.to_string().contains("255"), "{e}");
            let e = kv
                .set("default", "big", &vec![7u8; MAX_VALUE_BYTES + 1])
                .unwrap_err();
            assert!(matches!(e, KvError::OverLimit(_)), "{e}");
            assert!(
                e.to_string().contains("big") && e.to_string().contains("400000"),
                "{e}"
            );
            // The refused write left the old value.
            assert_eq!(
                kv.get("default", "big").unwrap().map(|v| v.len()),
                Some(MAX_VALUE_BYTES)
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// What the component relies on, whichever backend serves it.
    fn backend_contract(kv: &KvStore) {
        assert_eq!(kv.get("default", "a").unwrap(), None);
        kv.set("default", "a", &[0, 159, 255, b'\r', b'\n'])
            .unwrap();
        assert_eq!(
            kv.get("default", "a").unwrap(),
            Some(vec![0, 159, 255, b'\r', b'\n'])
        );
        assert!(kv.exists("default", "a").unwrap());
        kv.set("default", "b/c", b"x").unwrap();
        kv.set("other", "a0", b"x").unwrap();
        let (keys, cursor) = kv.list_keys("default", None, LIST_PAGE).unwrap();
        assert_eq!((keys, cursor), (vec!["a".to_string(), "b/c".into()], None));
        let (keys, cursor) = kv.list_keys("default", None, 1).unwrap();
        assert_eq!(
            (keys, cursor.as_deref()),
            (vec!["a".to_string()], Some("a"))
        );
        kv.delete("default", "a").unwrap();
        assert!(!kv.exists("default", "a").unwrap());
        assert_eq!(kv.get("other", "a0").unwrap().as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn kv_backend_contract_sqlite() {
        let dir = temp_dir("contract");
        let kv = KvStore::open(&StateSpec::Sqlite(dir.join("state.db"))).unwrap();
        backend_contract(&kv);
        assert_eq!(kv.describe(), dir.join("state.db").display().to_string());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn kv_backend_contract_redis() {
        let Some(server) = crate::kv_redis::tests::RedisServer::start(&[]) else {
            return;
        };
        let kv = KvStore::open(&StateSpec::Redis(server.url(0))).unwrap();
        backend_contract(&kv);
        assert_eq!(
            kv.describe(),
            format!("redis://127.0.0.1:{}/0", server.port)
        );
    }

    #[test]
    fn set_get_delete_exists() {
        let dir = temp_dir("basic");
        let kv = SqliteStore::open(&dir.join("state.db")).unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), None);
        assert!(!kv.exists("default", "a").unwrap());
        kv.set("default", "a", b"one").unwrap();
        assert_eq!(
            kv.get("default", "a").unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert!(kv.exists("default", "a").unwrap());
        kv.set("default", "a", b"two").unwrap();
        assert_eq!(
            kv.get("default", "a").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        // Buckets are separate namespaces.
        assert_eq!(kv.get("other", "a").unwrap(), None);
        kv.set("default", "empty", b"").unwrap();
        assert_eq!(kv.get("default", "empty").unwrap(), Some(vec![]));
        kv.delete("default", "a").unwrap();
        kv.delete("default", "never-there").unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), None);
        assert!(!kv.exists("default", "a").unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn list_keys_pages_with_last_key_cursor() {
        let dir = temp_dir("list");
        let kv = SqliteStore::open(&dir.join("state.db")).unwrap();
        assert_eq!(kv.list_keys("default", None, 2).unwrap(), (vec![], None));
        for k in ["c", "a", "e", "b", "d"] {
            kv.set("default", k, k.as_bytes()).unwrap();
        }
        kv.set("other", "zz", b"").unwrap();
        let (p1, c1) = kv.list_keys("default", None, 2).unwrap();
        assert_eq!(
            (p1.as_slice(), c1.as_deref()),
            (&["a".to_string(), "b".into()][..], Some("b"))
        );
        let (p2, c2) = kv.list_keys("default", c1.as_deref(), 2).unwrap();
        assert_eq!(
            (p2.as_slice(), c2.as_deref()),
            (&["c".to_string(), "d".into()][..], Some("d"))
        );
        let (p3, c3) = kv.list_keys("default", c2.as_deref(), 2).unwrap();
        assert_eq!((p3.as_slice(), c3), (&["e".to_string()][..], None));
        // An exactly full last page ends without a cursor too.
        let (all, c) = kv.list_keys("default", None, 5).unwrap();
        assert_eq!((all.len(), c), (5, None));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A program's own store (one bucket: the component opens only `default`), behind the same
    /// interface: the same paging, the same limits.
    #[test]
    fn an_embedded_store_pages_and_refuses_as_the_others_do() {
        let kv = KvStore::Embedded(Arc::new(MemoryStore::default()));
        for k in ["c", "a", "e", "b", "d"] {
            kv.set("default", k, k.as_bytes()).unwrap();
        }
        let (p1, c1) = kv.list_keys("default", None, 2).unwrap();
        assert_eq!(
            (p1, c1.as_deref()),
            (vec!["a".to_string(), "b".into()], Some("b"))
        );
        let (p3, c3) = kv.list_keys("default", Some("d"), 2).unwrap();
        assert_eq!((p3, c3), (vec!["e".to_string()], None));
        let (all, c) = kv.list_keys("default", None, 5).unwrap();
        assert_eq!((all.len(), c), (5, None), "an exactly full last page ends");
        kv.delete("default", "a").unwrap();
        assert!(!kv.exists("default", "a").unwrap() && kv.exists("default", "b").unwrap());
        let big = vec![0u8; slack_logs_core::env::MAX_VALUE_BYTES + 1];
        assert!(matches!(
            kv.set("default", "big", &big),
            Err(KvError::OverLimit(_))
        ));
    }

    #[test]
    fn values_survive_reopen() {
        let dir = temp_dir("reopen");
        let path = dir.join("state.db");
        {
            let kv = SqliteStore::open(&path).unwrap();
            kv.set("default", "checkpoint/audit", b"{\"w\":1}").unwrap();
        }
        let kv = SqliteStore::open(&path).unwrap();
        assert_eq!(
            kv.get("default", "checkpoint/audit").unwrap().as_deref(),
            Some(&b"{\"w\":1}"[..])
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn new_dir_and_file_are_owner_only() {
        let dir = temp_dir("perms");
        let path = dir.join("nested").join("state.db");
        let _kv = SqliteStore::open(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("nested")), 0o700);
        assert_eq!(mode(&path), 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unusable_paths_are_errors() {
        let dir = temp_dir("bad");
        std::fs::create_dir_all(&dir).unwrap();
        // A file where the directory should be.
        std::fs::write(dir.join("file"), b"x").unwrap();
        let e = SqliteStore::open(&dir.join("file").join("state.db"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("--state"), "{e}");
        // A file that is not a database.
        std::fs::write(dir.join("junk.db"), vec![7u8; 4096]).unwrap();
        assert!(SqliteStore::open(&dir.join("junk.db")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
