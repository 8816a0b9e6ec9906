//! The key-value store behind `wasi:keyvalue/store@0.2.0-draft2`: one SQLite file.
//!
//! The component keeps its checkpoints here, so durability matters more than
//! speed: WAL with `synchronous=FULL`, and every `set`/`delete` is its own
//! committed transaction, so a killed host never leaves a torn value.

use rusqlite::{params, Connection, OptionalExtension};
use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
        }
    }
}

impl std::error::Error for KvError {}

impl From<rusqlite::Error> for KvError {
    fn from(e: rusqlite::Error) -> Self {
        KvError::Sqlite(e)
    }
}

/// A handle to the SQLite store, shared by every store/instance of the process.
#[derive(Clone)]
pub struct KvStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl KvStore {
    /// Open (creating if needed) the store at `path`. A new directory gets mode
    /// 0700 and a new file 0600: the checkpoints are not secret, but the
    /// directory also holds the compiled component and nobody else needs either.
    pub fn open(path: &Path) -> Result<KvStore, KvError> {
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
        Ok(KvStore {
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
    fn set_get_delete_exists() {
        let dir = temp_dir("basic");
        let kv = KvStore::open(&dir.join("state.db")).unwrap();
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
        let kv = KvStore::open(&dir.join("state.db")).unwrap();
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

    #[test]
    fn values_survive_reopen() {
        let dir = temp_dir("reopen");
        let path = dir.join("state.db");
        {
            let kv = KvStore::open(&path).unwrap();
            kv.set("default", "checkpoint/audit", b"{\"w\":1}").unwrap();
        }
        let kv = KvStore::open(&path).unwrap();
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
        let _kv = KvStore::open(&path).unwrap();
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
        let e = KvStore::open(&dir.join("file").join("state.db"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("--state"), "{e}");
        // A file that is not a database.
        std::fs::write(dir.join("junk.db"), vec![7u8; 4096]).unwrap();
        assert!(KvStore::open(&dir.join("junk.db")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
