//! One pass at a time on a local state file, and no waiting for the leases of a pass that died.
//!
//! With a SQLite state file, every pass (`run --once`, each pass of `run --every`, each
//! `/collect` of `serve`, and `reset`) holds an exclusive OS lock (`flock`) on `<state>.lock` for
//! as long as it runs. The kernel drops the lock when its holder exits, however it exits
//! (`kill -9`, OOM, a crash), so a process that gets the lock knows that no live pass uses the
//! file: every walk lease in it (`slack_logs_core::lease::is_lease_key`) was left by a pass that
//! is gone, and is deleted before the component runs. The next pass after a crash therefore
//! resumes at once instead of reporting `held-elsewhere` until the dead pass's lease expires.
//!
//! A pass that finds the lock held does not run, rather than wait: the holder is a live pass on
//! the same file, collecting the same streams right now, so this pass would find nothing of its
//! own to do, and waiting would stretch a cron run or an HTTP request for up to a whole pass
//! budget. It reports [`Busy`] (`run` prints it and exits 0, `serve` answers 503 with
//! `Retry-After`, `reset` refuses and deletes nothing).
//!
//! The lock is local: it says nothing about hosts on other machines, which is why a state shared
//! between machines is a Redis URL (there the leases alone keep one pass per walk) and never a
//! SQLite file on a network file system.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use slack_logs_core::lease::{is_lease_key, LeaseRecord};

use crate::kv::{self, KvError, KvStore};

/// The lock file of a state file: `state.db` -> `state.db.lock`, beside it.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    state.with_file_name(name)
}

/// Held while a pass runs; the lock is released when this is dropped (or the process dies).
#[derive(Debug)]
pub struct PassLock {
    _file: File,
}

/// Another live process holds the state file's lock: a pass is running on it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub state: PathBuf,
    /// The holder's process id, as it wrote it into the lock file (for the message only).
    pub holder: Option<u32>,
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.holder {
            Some(pid) => format!("another slack-logs process (pid {pid})"),
            None => "another slack-logs process".to_owned(),
        };
        write!(
            f,
            "{who} is running a pass on the state file {}",
            self.state.display()
        )
    }
}

#[derive(Debug)]
pub enum LockError {
    Busy(Busy),
    /// The lock file cannot be used; the message says why and what to do.
    Unusable {
        path: PathBuf,
        message: String,
    },
    /// Clearing the dead passes' leases failed.
    Store(KvError),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Busy(b) => b.fmt(f),
            LockError::Unusable { path, message } => write!(
                f,
                "cannot use the lock file {}: {message} (it keeps two passes off one state file; \
                 choose another place with --state PATH)",
                path.display()
            ),
            LockError::Store(e) => write!(f, "clearing the leases of passes that ended: {e}"),
        }
    }
}

impl std::error::Error for LockError {}

/// The effective user id of this process.
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Takes the lock of `state` without waiting. The file is opened without following a symbolic
/// link and must belong to the effective user: a lock file planted by someone else (in `/tmp`,
/// say) could otherwise be held by them forever, or point our pid write at another file.
pub fn try_lock(state: &Path) -> Result<PassLock, LockError> {
    let path = lock_path(state);
    let unusable = |message: String| LockError::Unusable {
        path: path.clone(),
        message,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => unusable("it is a symbolic link; remove it".into()),
            _ => unusable(e.to_string()),
        })?;
    let meta = file.metadata().map_err(|e| unusable(e.to_string()))?;
    let me = effective_uid();
    if meta.uid() != me {
        return Err(unusable(format!(
            "it belongs to uid {}, not to this user (uid {me}); remove it",
            meta.uid()
        )));
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Busy(Busy {
                state: state.to_owned(),
                holder: text.trim().parse().ok(),
            }));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(unusable(e.to_string())),
    }
    // Our pid, for the message another process shows while we hold the lock. Best effort.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(PassLock { _file: file })
}

/// Takes the lock, then deletes every walk lease in the store: with the lock held, no live pass
/// owns any of them. Returns the lock and how many of the deleted leases had not expired yet,
/// i.e. were left by a pass that was killed or crashed (released leases stay as records with
/// `expires` 0 and are deleted too).
pub fn lock_and_clear_leases(
    state: &Path,
    kv: &KvStore,
    now: i64,
) -> Result<(PassLock, usize), LockError> {
    let lock = try_lock(state)?;
    let mut unexpired = 0;
    for key in all_keys(kv).map_err(LockError::Store)? {
        if !is_lease_key(&key) {
            continue;
        }
        let live = kv
            .get(kv::DEFAULT_STORE, &key)
            .map_err(LockError::Store)?
            .and_then(|v| serde_json::from_slice::<LeaseRecord>(&v).ok())
            .is_some_and(|l| l.expires > now);
        kv.delete(kv::DEFAULT_STORE, &key)
            .map_err(LockError::Store)?;
        unexpired += usize::from(live);
    }
    if unexpired > 0 {
        crate::log_info!(
            "cleared {unexpired} lease(s) left by a pass that ended without releasing them \
             (killed or crashed); no live pass uses {}, so this pass resumes from the checkpoints \
             at once",
            state.display()
        );
    }
    Ok((lock, unexpired))
}

/// Every key of the bucket the component uses.
pub fn all_keys(kv: &KvStore) -> Result<Vec<String>, KvError> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = kv.list_keys(kv::DEFAULT_STORE, cursor.as_deref(), kv::LIST_PAGE)?;
        keys.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(keys),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::StateSpec;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "slack-logs-lock-test-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_lock_file_sits_beside_the_state() {
        assert_eq!(
            lock_path(Path::new("/x/state.db")),
            PathBuf::from("/x/state.db.lock")
        );
        assert_eq!(
            lock_path(Path::new("state.db")),
            PathBuf::from("state.db.lock")
        );
    }

    #[test]
    fn one_holder_at_a_time_and_free_again_when_dropped() {
        let dir = temp_dir("holder");
        let state = dir.join("state.db");
        let first = try_lock(&state).unwrap();
        // A second open of the file is another holder, in this process as in another: the
        // same check keeps two `/collect`s of one `serve` apart.
        let e = try_lock(&state).unwrap_err();
        match e {
            LockError::Busy(b) => {
                assert_eq!(
                    b.holder,
                    Some(std::process::id()),
                    "the holder wrote its pid"
                );
                let text = b.to_string();
                assert!(
                    text.contains("running a pass") && text.contains("state.db"),
                    "{text}"
                );
            }
            other => panic!("{other}"),
        }
        drop(first);
        let again = try_lock(&state).unwrap();
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_lock_file_that_is_a_link_or_someone_elses_is_refused() {
        let dir = temp_dir("planted");
        let state = dir.join("state.db");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        std::os::unix::fs::symlink(&victim, lock_path(&state)).unwrap();
        let e = try_lock(&state).unwrap_err();
        assert!(
            matches!(&e, LockError::Unusable { message, .. } if message.contains("symbolic link")),
            "{e}"
        );
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"keep me",
            "no pid written through the link"
        );
        std::fs::remove_file(lock_path(&state)).unwrap();
        if effective_uid() == 0 {
            // As root (CI), a file of another user can be made: `nobody`'s.
            std::fs::write(lock_path(&state), b"").unwrap();
            std::os::unix::fs::chown(lock_path(&state), Some(65534), None).unwrap();
            let e = try_lock(&state).unwrap_err();
            assert!(
                matches!(&e, LockError::Unusable { message, .. } if message.contains("uid 65534")),
                "{e}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn taking_the_lock_clears_every_lease_and_counts_the_unexpired_ones() {
        let dir = temp_dir("leases");
        let state = dir.join("state.db");
        let kv = KvStore::open(&StateSpec::Sqlite(state.clone())).unwrap();
        let now = 1_700_000_000;
        let put = |k: &str, v: &str| kv.set(kv::DEFAULT_STORE, k, v.as_bytes()).unwrap();
        put(
            "slack-logs/v1/audit/org/lease",
            r#"{"owner":"pass-dead","expires":1700000030}"#,
        );
        put(
            "slack-logs/v1/access/T1/lease",
            r#"{"owner":"pass-old","expires":0}"#,
        );
        put("slack-logs/v1/audit/org/checkpoint", r#"{"v":1}"#);
        put("slack-logs/v1/audit/org/status", "{}");
        let (lock, unexpired) = lock_and_clear_leases(&state, &kv, now).unwrap();
        assert_eq!(unexpired, 1);
        assert_eq!(
            all_keys(&kv).unwrap(),
            vec![
                "slack-logs/v1/audit/org/checkpoint".to_string(),
                "slack-logs/v1/audit/org/status".into()
            ],
            "leases gone, everything else kept"
        );
        // While held, another pass neither runs nor touches the leases of the live one.
        put(
            "slack-logs/v1/audit/org/lease",
            r#"{"owner":"pass-live","expires":1700000030}"#,
        );
        assert!(matches!(
            lock_and_clear_leases(&state, &kv, now),
            Err(LockError::Busy(_))
        ));
        assert!(kv
            .exists(kv::DEFAULT_STORE, "slack-logs/v1/audit/org/lease")
            .unwrap());
        drop(lock);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
