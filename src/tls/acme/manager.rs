//! The ACME manager: one task on the control runtime.
//!
//! At start it serves what `--acme-storage` holds (no order for a name
//! whose stored certificate is not yet due), then follows the routing
//! table: every time it is swapped, the hosts that want ACME are read again.
//! A name that needs a certificate gets an order task of its own (a
//! `JoinSet`), so a slow or failing name never delays another; results come
//! back to this loop, which alone writes the status and publishes the whole
//! ACME set into the [`CertStore`] (one atomic swap: open connections keep
//! their certificate, new handshakes get the new one).
//!
//! Certificates of names no longer wanted keep being served until wharf
//! restarts (a container that comes back finds its certificate) but are not
//! renewed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::Account;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::order::{self, OrderContext, OrderError};
use super::schedule::{self, Due};
use super::storage::{Storage, StoredCert};
use super::{AcmeSettings, AcmeStatus, NameStatus};
use crate::model::HostPattern;
use crate::tls::store::format_rfc3339;
use crate::tls::{certificate_from_pem, CertSource, CertStore, Certificate, Http01};

/// How long an order lock is valid: longer than any order takes.
const LOCK_TTL: Duration = Duration::from_secs(600);
/// When another wharf holds a name's lock, look again after this.
const LOCKED_RETRY: Duration = Duration::from_secs(30);

/// Exact names to order and wildcards to report, from the wanted hosts.
pub fn split_hosts(hosts: &[HostPattern]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut exact = BTreeSet::new();
    let mut wild = BTreeSet::new();
    for h in hosts {
        match h {
            HostPattern::Exact(n) => {
                exact.insert(n.clone());
            }
            HostPattern::Wildcard(_) => {
                wild.insert(h.to_string());
            }
        }
    }
    (exact, wild)
}

/// A name's certificate and schedule, as the loop keeps it.
#[derive(Debug, Default)]
struct Entry {
    cert: Option<Certificate>,
    renew_at: Option<SystemTime>,
    retry_at: Option<SystemTime>,
    failures: u32,
    ordering: bool,
    last_error: Option<String>,
    locked: bool,
}

pub struct Manager {
    pub settings: AcmeSettings,
    pub storage: Storage,
    pub store: Arc<CertStore>,
    pub http01: Arc<Http01>,
    pub status: Arc<AcmeStatus>,
}

enum Outcome {
    Issued(StoredCert),
    /// Another wharf holds the lock.
    Locked,
    Failed(String),
}

impl Manager {
    /// Run until aborted. `hosts` reads the hosts that want ACME from the
    /// current routing table; `swaps` ticks at each table swap.
    pub async fn run(self: Arc<Self>, hosts: impl Fn() -> Vec<HostPattern> + Send, mut swaps: watch::Receiver<u64>) {
        *self.status.directory.lock().unwrap_or_else(|p| p.into_inner()) = self.settings.directory.clone();
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        let (stored, errors) = self.storage.load_certs();
        for e in errors {
            warn!(error = %e, "stored ACME certificate ignored");
        }
        for (name, c) in stored {
            match self.parse(&name, &c) {
                Ok(cert) => {
                    let renew_at = self.renewal(&cert);
                    info!(
                        name,
                        serial = cert.info.serial,
                        not_after = format_rfc3339(cert.info.not_after),
                        "serving stored ACME certificate"
                    );
                    entries.insert(
                        name,
                        Entry {
                            cert: Some(cert),
                            renew_at: Some(renew_at),
                            ..Entry::default()
                        },
                    );
                }
                Err(e) => warn!(name, error = %e, "stored ACME certificate unusable; it will be ordered again"),
            }
        }
        self.publish(&entries);

        let mut account: Option<Account> = None;
        let mut account_failures = 0u32;
        let mut account_retry = SystemTime::now();
        let mut tasks: JoinSet<(String, Outcome)> = JoinSet::new();
        let mut wildcards_reported = BTreeSet::new();
        loop {
            let (wanted, wild) = split_hosts(&hosts());
            for w in &wild {
                if wildcards_reported.insert(w.clone()) {
                    warn!(host = w, "wildcard host needs a DNS-01 challenge, which wharf does not do: no ACME certificate for it (put one in --tls-dir)");
                }
            }
            let now = SystemTime::now();
            let mut next_wake = now + Duration::from_secs(3600);
            let any_due = wanted.iter().any(|n| {
                let e = entries.get(n);
                matches!(
                    schedule::due(
                        e.and_then(|e| e.renew_at),
                        e.and_then(|e| e.retry_at),
                        e.is_some_and(|e| e.ordering),
                        now
                    ),
                    Due::Now
                )
            });
            if any_due && account.is_none() && account_retry <= now {
                match self.account().await {
                    Ok(a) => {
                        account = Some(a);
                        account_failures = 0;
                        *self.status.account_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                    Err(e) => {
                        account_failures += 1;
                        let delay = schedule::retry_delay(account_failures, rand::random());
                        account_retry = SystemTime::now() + delay;
                        warn!(error = %e, retry_in = ?delay, "ACME account unavailable");
                        *self.status.account_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    }
                }
            }
            if account.is_none() {
                next_wake = next_wake.min(account_retry.max(now + Duration::from_millis(100)));
            }
            let now = SystemTime::now();
            for name in &wanted {
                let e = entries.entry(name.clone()).or_default();
                match schedule::due(e.renew_at, e.retry_at, e.ordering, now) {
                    Due::Now => {
                        if let Some(acct) = &account {
                            e.ordering = true;
                            info!(
                                name,
                                renewal = e.cert.is_some(),
                                challenge = self.settings.challenge.as_str(),
                                "ACME order starting"
                            );
                            let this = Arc::clone(&self);
                            let acct = acct.clone();
                            let name = name.clone();
                            tasks.spawn(async move {
                                let outcome = this.order(&acct, &name).await;
                                (name, outcome)
                            });
                        }
                    }
                    Due::At(t) => next_wake = next_wake.min(t),
                    Due::Never => {}
                }
            }
            self.show(&entries, &wanted, &wild);

            let sleep = next_wake.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::select! {
                changed = swaps.changed() => {
                    if changed.is_err() {
                        // The router is gone: wharf is stopping.
                        tasks.abort_all();
                        return;
                    }
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((name, outcome)) = done {
                        self.finish(&mut entries, &name, outcome);
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn account(&self) -> Result<Account, OrderError> {
        let root = match &self.settings.ca_root {
            Some(p) => {
                Some(std::fs::read(p).map_err(|e| OrderError::Other(format!("--acme-ca-root {}: {e}", p.display())))?)
            }
            None => None,
        };
        // Validate once; the closure below cannot fail after this.
        order::http_client(root.as_deref()).map_err(OrderError::Other)?;
        let http = || order::http_client(root.as_deref()).unwrap_or_else(|_| unreachable_client());
        order::account(
            &self.storage,
            &self.settings.directory,
            self.settings.email.as_deref(),
            http,
        )
        .await
    }

    async fn order(&self, account: &Account, name: &str) -> Outcome {
        let owner = format!("{}:{}", hostname(), std::process::id());
        let _lock = match self.storage.try_lock(name, &owner, LOCK_TTL) {
            Ok(Some(l)) => l,
            Ok(None) => return Outcome::Locked,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let ctx = OrderContext {
            account,
            directory: &self.settings.directory,
            storage: &self.storage,
            challenge: self.settings.challenge,
            store: &self.store,
            http01: &self.http01,
        };
        match order::obtain(&ctx, name).await {
            Ok(c) => Outcome::Issued(c),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    fn finish(&self, entries: &mut BTreeMap<String, Entry>, name: &str, outcome: Outcome) {
        let e = entries.entry(name.to_string()).or_default();
        e.ordering = false;
        e.locked = false;
        let now = SystemTime::now();
        match outcome {
            Outcome::Issued(stored) => match self.parse(name, &stored) {
                Ok(cert) => {
                    self.status
                        .orders_issued
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    info!(
                        name,
                        serial = cert.info.serial,
                        not_after = format_rfc3339(cert.info.not_after),
                        "ACME certificate issued"
                    );
                    e.renew_at = Some(self.renewal(&cert));
                    e.cert = Some(cert);
                    e.retry_at = None;
                    e.failures = 0;
                    e.last_error = None;
                    self.publish(entries);
                }
                Err(err) => self.failed(e, name, format!("issued certificate unusable: {err}"), now),
            },
            Outcome::Locked => {
                // The other wharf may have stored a fresh certificate meanwhile.
                if let Ok(Some(stored)) = self.storage.load_cert(name) {
                    if let Ok(cert) = self.parse(name, &stored) {
                        if e.cert.as_ref().is_none_or(|c| c.info.serial != cert.info.serial) {
                            info!(
                                name,
                                serial = cert.info.serial,
                                "using the certificate another wharf stored"
                            );
                            e.renew_at = Some(self.renewal(&cert));
                            e.cert = Some(cert);
                            self.publish(entries);
                            return;
                        }
                    }
                }
                info!(name, "another wharf sharing the storage is ordering this name; waiting");
                e.locked = true;
                e.retry_at = Some(now + LOCKED_RETRY);
            }
            Outcome::Failed(err) => self.failed(e, name, err, now),
        }
    }

    fn failed(&self, e: &mut Entry, name: &str, err: String, now: SystemTime) {
        self.status
            .orders_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        e.failures += 1;
        let delay = schedule::retry_delay(e.failures, rand::random());
        e.retry_at = Some(now + delay);
        warn!(name, failures = e.failures, retry_in = ?delay, error = %err, "ACME order failed");
        e.last_error = Some(err);
    }

    fn parse(&self, name: &str, c: &StoredCert) -> Result<Certificate, String> {
        certificate_from_pem(c.chain_pem.as_bytes(), c.key_pem.as_bytes())
            .map(|cert| {
                cert.with_source(
                    CertSource::Acme,
                    format!("{}/certs/{name}.pem", self.storage.dir().display()),
                )
            })
            .map_err(|e| e.to_string())
    }

    fn renewal(&self, cert: &Certificate) -> SystemTime {
        schedule::renewal_at(
            cert.info.not_before,
            cert.info.not_after,
            self.settings.renew_before,
            rand::random(),
            SystemTime::now(),
        )
    }

    fn publish(&self, entries: &BTreeMap<String, Entry>) {
        let certs: Vec<Certificate> = entries.values().filter_map(|e| e.cert.clone()).collect();
        self.store.publish(CertSource::Acme, certs);
    }

    fn show(&self, entries: &BTreeMap<String, Entry>, wanted: &BTreeSet<String>, wild: &BTreeSet<String>) {
        let mut names = BTreeMap::new();
        for (name, e) in entries {
            let state = match (e.ordering, &e.cert, e.locked, e.last_error.is_some()) {
                (true, Some(_), _, _) => "renewing",
                (true, None, _, _) => "ordering",
                (false, _, true, _) => "locked",
                (false, _, _, true) => "failed",
                (false, Some(_), _, _) => "valid",
                (false, None, _, _) => "pending",
            };
            if !wanted.contains(name) && e.cert.is_none() {
                continue;
            }
            let info = e.cert.as_ref().map(|c| &c.info);
            names.insert(
                name.clone(),
                NameStatus {
                    name: name.clone(),
                    state,
                    challenge: self.settings.challenge.as_str(),
                    serial: info.map(|i| i.serial.clone()),
                    issuer: info.map(|i| i.issuer.clone()),
                    not_after: info.map(|i| format_rfc3339(i.not_after)),
                    next_renewal: e.renew_at.filter(|_| wanted.contains(name)).map(format_rfc3339),
                    last_error: e.last_error.clone(),
                    next_attempt: e
                        .retry_at
                        .filter(|_| e.last_error.is_some() || e.locked)
                        .map(format_rfc3339),
                    failures: e.failures,
                    not_after_time: info.map(|i| i.not_after),
                },
            );
        }
        for w in wild {
            names.insert(
                w.clone(),
                NameStatus {
                    name: w.clone(),
                    state: "needs_dns01",
                    challenge: "dns-01",
                    last_error: Some("wildcard names need the DNS-01 challenge, which wharf does not do; put a certificate in --tls-dir".into()),
                    ..NameStatus::default()
                },
            );
        }
        *self.status.names.lock().unwrap_or_else(|p| p.into_inner()) = names;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn unreachable_client() -> Box<dyn instant_acme::HttpClient> {
    // http_client succeeded once with the same input: it cannot fail now.
    order::http_client(None).unwrap_or_else(|e| panic!("ACME HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_set_apart_from_orderable_names() {
        let hosts = vec![
            HostPattern::Exact("a.example.com".into()),
            HostPattern::Wildcard(".example.com".into()),
            HostPattern::Exact("a.example.com".into()),
        ];
        let (exact, wild) = split_hosts(&hosts);
        assert_eq!(exact.into_iter().collect::<Vec<_>>(), vec!["a.example.com"]);
        assert_eq!(wild.into_iter().collect::<Vec<_>>(), vec!["*.example.com"]);
    }
}
