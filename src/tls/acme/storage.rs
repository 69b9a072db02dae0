//! `--acme-storage DIR`: what wharf must not lose across restarts and crashes.
//!
//! Layout (every file replaced whole, never edited in place):
//!
//! ```text
//! DIR/account-<directory-slug>.json   account credentials for one ACME directory
//! DIR/certs/<name>.pem                certificate chain, then its private key
//! DIR/orders/<name>.json              an order in progress (URL + CSR key)
//! DIR/locks/<name>.lock               who is ordering <name>, until when
//! ```
//!
//! Every write goes to a temporary file in the same directory, is fsynced,
//! renamed over the target and the directory is fsynced: a crash at any
//! point leaves either the old file or the new one, never half of one (a
//! leftover `*.tmp-*` is ignored and removed at open). A certificate and its
//! key share one file so they can never disagree.
//!
//! An order in progress is recorded (URL and the key its CSR uses) as soon as
//! the server created it, so a wharf SIGKILLed mid-order finds it at the next
//! start and asks the server where it stands: valid → download, ready →
//! finalize with the recorded key, pending → answer the challenges again,
//! invalid or unknown → start over.
//!
//! Locks: two wharf processes sharing one directory must not order the same
//! name at once (the CA's rate limits count duplicates). A lock is a file
//! created with `O_EXCL` holding its owner and an expiry; an expired lock
//! (its owner died) is taken over, and so at once is a lock whose owner
//! was this process itself (a restart) or a dead pid of this host. On a shared volume (NFS, a Docker volume
//! mounted by several hosts) `O_EXCL` creation is atomic on NFSv3 and later,
//! but expiry compares wall clocks: hosts must keep their clocks in sync
//! (NTP), and a holder that runs longer than the expiry may be overlapped by
//! another; the worst outcome is one duplicate order, never a corrupt store,
//! because every file is replaced by rename.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("ACME storage {path}: {source}; is --acme-storage a writable directory?")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ACME storage {path}: cannot parse: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{0:?} cannot be stored: not a plain DNS name")]
    BadName(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A stored certificate: PEM chain (leaf first) and PEM private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCert {
    pub chain_pem: String,
    pub key_pem: String,
}

/// An order in progress, recorded so the next start can finish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The directory the order was placed with: an order from another
    /// directory (the flag changed) is dropped.
    pub directory: String,
    pub url: String,
    /// The private key of the CSR (PEM), so a `ready` order can be finalized
    /// after a restart and a `valid` one yields a usable certificate.
    pub key_pem: String,
    /// Unix seconds.
    pub started: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct LockFile {
    owner: String,
    expires: u64,
}

#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Only names that are safe as file names are stored: lowercase DNS names
/// (letters, digits, `-`, `.`), no wildcard, no `..`.
pub fn check_name(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(StorageError::BadName(name.to_string()))
    }
}

/// A file-name-safe slug of a directory URL (`https://acme-v02.api.letsencrypt.org/directory`
/// → `acme-v02.api.letsencrypt.org-directory`).
pub fn directory_slug(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let slug: String = rest
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    slug.trim_matches('-').to_string()
}

impl Storage {
    /// Open (create) the directory tree and remove temporary files a crash left.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Storage, StorageError> {
        let dir = dir.into();
        for sub in ["", "certs", "orders", "locks"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).map_err(io(&d))?;
            for entry in fs::read_dir(&d).map_err(io(&d))?.flatten() {
                if entry.file_name().to_string_lossy().contains(".tmp-") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        // Fail at start, not at the first order, when the volume is read-only.
        let probe = dir.join(".write-test");
        write_atomic(&probe, b"ok")?;
        let _ = fs::remove_file(&probe);
        Ok(Storage { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn account_path(&self, directory: &str) -> PathBuf {
        self.dir.join(format!("account-{}.json", directory_slug(directory)))
    }

    /// The stored account credentials (JSON as instant-acme serializes them).
    pub fn load_account(&self, directory: &str) -> Result<Option<String>, StorageError> {
        read_optional(&self.account_path(directory))
    }

    pub fn save_account(&self, directory: &str, credentials_json: &str) -> Result<(), StorageError> {
        write_atomic(&self.account_path(directory), credentials_json.as_bytes())
    }

    fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.join("certs").join(format!("{name}.pem"))
    }

    pub fn save_cert(&self, name: &str, cert: &StoredCert) -> Result<(), StorageError> {
        check_name(name)?;
        let mut body = cert.chain_pem.trim_end().to_string();
        body.push('\n');
        body.push_str(cert.key_pem.trim_end());
        body.push('\n');
        write_atomic(&self.cert_path(name), body.as_bytes())
    }

    pub fn load_cert(&self, name: &str) -> Result<Option<StoredCert>, StorageError> {
        check_name(name)?;
        let path = self.cert_path(name);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        split_pem(&text).map(Some).ok_or_else(|| StorageError::Corrupt {
            path,
            reason: "expected CERTIFICATE blocks followed by a PRIVATE KEY block".into(),
        })
    }

    /// Every stored certificate by name. An unreadable one is reported
    /// beside the others, never instead of them.
    pub fn load_certs(&self) -> (Vec<(String, StoredCert)>, Vec<StorageError>) {
        let mut certs = Vec::new();
        let mut errors = Vec::new();
        let d = self.dir.join("certs");
        let mut names: Vec<String> = match fs::read_dir(&d) {
            Ok(rd) => rd
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".pem").map(str::to_string))
                .collect(),
            Err(e) => return (certs, vec![io(&d)(e)]),
        };
        names.sort();
        for name in names {
            match self.load_cert(&name) {
                Ok(Some(c)) => certs.push((name, c)),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        (certs, errors)
    }

    fn order_path(&self, name: &str) -> PathBuf {
        self.dir.join("orders").join(format!("{name}.json"))
    }

    pub fn save_order(&self, name: &str, order: &OrderRecord) -> Result<(), StorageError> {
        check_name(name)?;
        let json = serde_json::to_vec_pretty(order).unwrap_or_default();
        write_atomic(&self.order_path(name), &json)
    }

    /// The recorded order for `name`; an unparsable record is removed (the
    /// order is then simply placed again) and reported.
    pub fn load_order(&self, name: &str) -> Result<Option<OrderRecord>, StorageError> {
        check_name(name)?;
        let path = self.order_path(name);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        match serde_json::from_str(&text) {
            Ok(o) => Ok(Some(o)),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(StorageError::Corrupt {
                    path,
                    reason: e.to_string(),
                })
            }
        }
    }

    pub fn remove_order(&self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        remove_durably(&self.order_path(name))
    }

    /// Take the order lock for `name` for `ttl`, or `None` if another live
    /// owner holds it. `owner` names this process (host and pid).
    pub fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<Option<OrderLock>, StorageError> {
        check_name(name)?;
        let path = self.dir.join("locks").join(format!("{name}.lock"));
        let body = serde_json::to_vec(&LockFile {
            owner: owner.to_string(),
            expires: unix_now() + ttl.as_secs(),
        })
        .unwrap_or_default();
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(&body).map_err(io(&path))?;
                    f.sync_all().map_err(io(&path))?;
                    sync_dir(&path)?;
                    return Ok(Some(OrderLock { path }));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let held: Option<LockFile> = fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
                    match held {
                        // An unreadable lock is one being written right now, or
                        // garbage from a crash: wait for it to expire by mtime.
                        None if !modified_before(&path, ttl) => return Ok(None),
                        Some(l) if l.expires > unix_now() && !owner_gone(&l.owner, owner) => return Ok(None),
                        _ => {
                            // Expired: its owner died. Remove and race for it again.
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(None)
    }
}

/// Is the lock's owner (`host:pid`) certainly gone? It is when the lock is
/// our own (`me`: a previous life of this process — the manager never asks
/// for a lock it holds — such as a container restarted after SIGKILL, pid 1
/// again), or when it was taken on this host by a pid that no longer runs.
/// A lock of another host is only ever released by its expiry.
pub fn owner_gone(owner: &str, me: &str) -> bool {
    if owner == me {
        return true;
    }
    let (Some((host, pid)), Some((my_host, _))) = (owner.rsplit_once(':'), me.rsplit_once(':')) else {
        return false;
    };
    host == my_host
        && pid
            .parse::<u32>()
            .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

fn modified_before(path: &Path, age: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| t.elapsed().unwrap_or_default() > age)
        .unwrap_or(true)
}

/// Held while ordering a name; dropping it removes the lock file.
#[derive(Debug)]
pub struct OrderLock {
    path: PathBuf,
}

impl Drop for OrderLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Chain blocks, then the key block, from one PEM file.
pub fn split_pem(text: &str) -> Option<StoredCert> {
    let key_start = text
        .match_indices("-----BEGIN ")
        .map(|(i, _)| i)
        .find(|&i| text[i..].lines().next().is_some_and(|l| l.contains("PRIVATE KEY")))?;
    let chain = text[..key_start].trim();
    let key = text[key_start..].trim();
    if !chain.contains("-----BEGIN CERTIFICATE-----") || !key.contains("PRIVATE KEY-----") {
        return None;
    }
    Some(StoredCert {
        chain_pem: format!("{chain}\n"),
        key_pem: format!("{key}\n"),
    })
}

fn read_optional(path: &Path) -> Result<Option<String>, StorageError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Temp file in the same directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        "{name}.tmp-{}-{}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io(path))?;
        sync_dir(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn remove_durably(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

fn sync_dir(path: &Path) -> Result<(), StorageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wharf-acme-{tag}-{}-{}", std::process::id(), unix_now()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    const CHAIN: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nCCCC\n-----END PRIVATE KEY-----\n";

    #[test]
    fn cert_round_trips_through_one_file_and_survives_reopen() {
        let d = tmpdir("cert");
        let s = Storage::open(&d).unwrap();
        let c = StoredCert {
            chain_pem: CHAIN.into(),
            key_pem: KEY.into(),
        };
        s.save_cert("a.example.com", &c).unwrap();
        let s = Storage::open(&d).unwrap();
        assert_eq!(s.load_cert("a.example.com").unwrap(), Some(c.clone()));
        let (all, errs) = s.load_certs();
        assert_eq!(all, vec![("a.example.com".to_string(), c)]);
        assert!(errs.is_empty());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_corrupt_cert_is_reported_and_the_others_still_load() {
        let d = tmpdir("corrupt");
        let s = Storage::open(&d).unwrap();
        s.save_cert(
            "good.example.com",
            &StoredCert {
                chain_pem: CHAIN.into(),
                key_pem: KEY.into(),
            },
        )
        .unwrap();
        fs::write(d.join("certs/bad.example.com.pem"), "garbage").unwrap();
        let (all, errs) = s.load_certs();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, "good.example.com");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().contains("bad.example.com"), "{}", errs[0]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn leftover_temp_files_are_removed_at_open_and_never_read() {
        let d = tmpdir("tmp");
        Storage::open(&d).unwrap();
        fs::write(d.join("certs/x.example.com.pem.tmp-1-1"), "half").unwrap();
        let s = Storage::open(&d).unwrap();
        assert!(!d.join("certs/x.example.com.pem.tmp-1-1").exists());
        assert!(s.load_certs().0.is_empty());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn order_record_round_trips_and_a_corrupt_one_is_dropped() {
        let d = tmpdir("order");
        let s = Storage::open(&d).unwrap();
        let o = OrderRecord {
            directory: "https://ca/dir".into(),
            url: "https://ca/order/1".into(),
            key_pem: KEY.into(),
            started: 5,
        };
        s.save_order("a.example.com", &o).unwrap();
        assert_eq!(s.load_order("a.example.com").unwrap(), Some(o));
        s.remove_order("a.example.com").unwrap();
        assert_eq!(s.load_order("a.example.com").unwrap(), None);
        fs::write(d.join("orders/b.example.com.json"), "{").unwrap();
        assert!(s.load_order("b.example.com").is_err());
        assert_eq!(s.load_order("b.example.com").unwrap(), None);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_held_lock_excludes_a_second_owner_until_released_or_expired() {
        let d = tmpdir("lock");
        let s = Storage::open(&d).unwrap();
        let held = s.try_lock("a.example.com", "one", Duration::from_secs(600)).unwrap();
        assert!(held.is_some());
        assert!(s
            .try_lock("a.example.com", "two", Duration::from_secs(600))
            .unwrap()
            .is_none());
        assert!(s
            .try_lock("b.example.com", "two", Duration::from_secs(600))
            .unwrap()
            .is_some());
        drop(held);
        let again = s.try_lock("a.example.com", "two", Duration::from_secs(600)).unwrap();
        assert!(again.is_some());
        // An expired lock (its owner died) is taken over.
        std::mem::forget(again);
        fs::write(
            d.join("locks/a.example.com.lock"),
            serde_json::to_vec(&LockFile {
                owner: "dead".into(),
                expires: unix_now() - 1,
            })
            .unwrap(),
        )
        .unwrap();
        assert!(s
            .try_lock("a.example.com", "three", Duration::from_secs(600))
            .unwrap()
            .is_some());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_lock_left_by_a_dead_process_of_this_host_or_by_ourselves_is_taken_over_at_once() {
        let d = tmpdir("stale");
        let s = Storage::open(&d).unwrap();
        // A pid that cannot run: above the kernel's pid limit.
        let dead = "hostA:4294967";
        std::mem::forget(
            s.try_lock("a.example.com", dead, Duration::from_secs(600))
                .unwrap()
                .unwrap(),
        );
        assert!(s
            .try_lock("a.example.com", "hostA:1", Duration::from_secs(600))
            .unwrap()
            .is_some());
        std::mem::forget(
            s.try_lock("b.example.com", "hostA:1", Duration::from_secs(600))
                .unwrap()
                .unwrap(),
        );
        assert!(
            s.try_lock("b.example.com", "hostA:1", Duration::from_secs(600))
                .unwrap()
                .is_some(),
            "own lock"
        );
        // Another host's live lock waits for its expiry.
        std::mem::forget(
            s.try_lock(
                "c.example.com",
                dead.replace("hostA", "hostB").as_str(),
                Duration::from_secs(600),
            )
            .unwrap()
            .unwrap(),
        );
        assert!(s
            .try_lock("c.example.com", "hostA:1", Duration::from_secs(600))
            .unwrap()
            .is_none());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn names_that_are_not_plain_dns_names_are_never_file_names() {
        for bad in ["", "../etc", "*.example.com", "A.example.com", "a/b", ".hidden"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("a-1.example.com").unwrap();
    }

    #[test]
    fn directory_urls_become_distinct_slugs() {
        assert_eq!(
            directory_slug("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org-directory"
        );
        assert_ne!(
            directory_slug("https://127.0.0.1:14000/dir"),
            directory_slug("https://127.0.0.1:14001/dir")
        );
    }
}
