//! `--tls-dir`: certificates from PEM files, polled for changes.
//!
//! Pairing, for each file in the directory (not its subdirectories; names
//! starting with `.` are ignored):
//! - `NAME.crt`, `NAME.pem`, `NAME.cer` or `NAME.cert` holds the chain
//!   (end-entity first); its key is `NAME.key` when that file exists, else
//!   it must be in the same file (one PEM with both);
//! - a `.key` file without a chain file beside it is ignored.
//!
//! The directory is scanned every [`POLL_INTERVAL`]. A pair is re-read only
//! when one of its files changed (inode, size or modification time), so an
//! unchanged directory costs a `readdir` and a few `stat`s. A file that fails
//! to load is logged once per change with its reason; the certificate
//! previously loaded from it, if any, keeps serving (a half-written renewal
//! never takes a site down). A removed file's certificate is removed. After
//! each change the whole set is published to the [`CertStore`] at once.
//!
//! Polling rather than inotify: it works the same on bind mounts, NFS,
//! Kubernetes-style symlink swaps and Docker Desktop's shared folders.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::store::format_rfc3339;
use super::{certificate_from_pem, CertSource, CertStore, Certificate, TlsError};

/// How often `--tls-dir` is scanned for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

const CHAIN_EXTENSIONS: &[&str] = &["crt", "pem", "cer", "cert"];

/// A chain file and the file its key is read from (possibly the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub chain: PathBuf,
    pub key: PathBuf,
}

/// The pairs in `dir`, sorted by chain path. See the module docs.
pub fn pairs(dir: &Path) -> std::io::Result<Vec<Pair>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path.file_name().is_none_or(|n| n.to_string_lossy().starts_with('.'));
        if !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut out = Vec::new();
    for chain in &files {
        let ext = chain.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        if !ext.is_some_and(|e| CHAIN_EXTENSIONS.contains(&e.as_str())) {
            continue;
        }
        let key = chain.with_extension("key");
        let key = if files.contains(&key) { key } else { chain.clone() };
        out.push(Pair {
            chain: chain.clone(),
            key,
        });
    }
    Ok(out)
}

/// What identifies a version of a file: inode, size, modification time.
type Stamp = (u64, u64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

fn load(pair: &Pair) -> Result<Certificate, TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| TlsError::Io(format!("{}: {e}", p.display())));
    let chain = read(&pair.chain)?;
    let key = if pair.key == pair.chain {
        chain.clone()
    } else {
        read(&pair.key)?
    };
    let origin = pair.chain.display().to_string();
    Ok(certificate_from_pem(&chain, &key)?.with_source(CertSource::Files, origin))
}

#[derive(Debug)]
struct Entry {
    pair: Pair,
    stamps: (Option<Stamp>, Option<Stamp>),
    /// The last certificate that loaded from this pair (kept across a broken update).
    cert: Option<Certificate>,
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The served set changed: publish [`DirWatch::certificates`].
    pub changed: bool,
    /// Files that failed to load in this scan, with the reason.
    pub errors: Vec<(PathBuf, TlsError)>,
}

/// The state of one `--tls-dir` between scans.
#[derive(Debug)]
pub struct DirWatch {
    dir: PathBuf,
    entries: BTreeMap<PathBuf, Entry>,
}

impl DirWatch {
    pub fn new(dir: impl Into<PathBuf>) -> DirWatch {
        DirWatch {
            dir: dir.into(),
            entries: BTreeMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Look at the directory once: load new and changed pairs, drop removed
    /// ones, log what happened. An unreadable directory is an error and
    /// changes nothing.
    pub fn scan(&mut self) -> Result<Scan, std::io::Error> {
        let found = pairs(&self.dir)?;
        let mut scan = Scan::default();
        let before = self.entries.len();
        self.entries.retain(|chain, _| {
            let keep = found.iter().any(|p| &p.chain == chain);
            if !keep {
                info!(file = %chain.display(), "certificate file removed; no longer served");
            }
            keep
        });
        scan.changed |= self.entries.len() != before;
        for pair in found {
            let stamps = (stamp(&pair.chain), stamp(&pair.key));
            let previous = self.entries.get(&pair.chain);
            if previous.is_some_and(|e| e.stamps == stamps && e.pair == pair) {
                continue;
            }
            let kept = previous.and_then(|e| e.cert.clone());
            let cert = match load(&pair) {
                Ok(c) => {
                    let now = SystemTime::now();
                    if c.info.not_after < now {
                        warn!(file = %pair.chain.display(), names = ?c.names, not_after = %format_rfc3339(c.info.not_after),
                              "certificate has expired; serving it anyway until the file is replaced");
                    } else {
                        info!(file = %pair.chain.display(), key = %pair.key.display(), names = ?c.names,
                              not_after = %format_rfc3339(c.info.not_after), "certificate loaded");
                    }
                    scan.changed = true;
                    Some(c)
                }
                Err(e) => {
                    match &kept {
                        Some(old) => warn!(file = %pair.chain.display(), key = %pair.key.display(), error = %e,
                                           names = ?old.names, "certificate file cannot be used; the previous certificate from it keeps serving"),
                        None => warn!(file = %pair.chain.display(), key = %pair.key.display(), error = %e,
                                      "certificate file cannot be used; nothing is served from it"),
                    }
                    scan.errors.push((pair.chain.clone(), e));
                    kept
                }
            };
            self.entries.insert(pair.chain.clone(), Entry { pair, stamps, cert });
        }
        Ok(scan)
    }

    /// Every certificate currently loaded (one per good pair).
    pub fn certificates(&self) -> Vec<Certificate> {
        self.entries.values().filter_map(|e| e.cert.clone()).collect()
    }

    /// Scan and, when something changed, publish to `store`.
    pub fn scan_and_publish(&mut self, store: &CertStore) -> Result<Scan, std::io::Error> {
        let scan = self.scan()?;
        if scan.changed {
            store.publish(CertSource::Files, self.certificates());
        }
        Ok(scan)
    }
}

/// Poll `watch` every `interval` and publish changes, for ever (abort the
/// task to stop). An unreadable directory is logged once per outage; the
/// certificates loaded before keep serving.
pub async fn poll(mut watch: DirWatch, store: Arc<CertStore>, interval: Duration) {
    let mut failing = false;
    loop {
        tokio::time::sleep(interval).await;
        // Small directories: a blocking readdir + stats on the control thread is fine.
        match watch.scan_and_publish(&store) {
            Ok(_) if failing => {
                failing = false;
                info!(dir = %watch.dir().display(), "--tls-dir readable again");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                warn!(dir = %watch.dir().display(), error = %e, "cannot read --tls-dir; serving the certificates loaded before");
            }
            Err(_) => {}
        }
    }
}
