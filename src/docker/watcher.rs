//! Keeps the routing table in step with Docker.
//!
//! Events are hints, never the state: after an event the watcher re-lists
//! and re-derives everything, so a missed or reordered event cannot leave a
//! ghost backend. The sequence, and the race each step closes:
//!
//! 1. note the time, then list: events that happen during the listing are
//!    not lost, because the events request asks for everything `since` that
//!    time (the daemon replays its recent history);
//! 2. on an event, wait a few milliseconds for the rest of its burst
//!    (`docker compose up --scale` emits dozens), then re-list once;
//! 3. a `kill` event drains its container *at once*, from the last listing,
//!    without waiting for the re-list: it is the first sign of `docker stop`;
//! 4. a `die` or `destroy` removes its container at once and keeps it out
//!    of re-listings until the daemon stops listing it or it starts again:
//!    a listing taken just after `die` can still show it running; likewise
//!    `pause`, `unpause` and `health_status` override the listing until it
//!    agrees (Docker 20.10 logs these events before updating what it lists),
//!    and every burst is followed by one more re-list 250 ms later;
//! 5. when the stream ends or fails, keep the current table, back off with
//!    jitter, reconnect and re-list; also re-list every minute regardless.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::Docker;
use futures::StreamExt;
use rand::Rng;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{debug, info, warn};

use super::client;
use super::desired::{self, ContainerInfo, Desired, Health, Settings};
use crate::config::StaticPool;
use crate::routing::Router;

/// How long a burst of events is gathered before one re-list.
const COALESCE: Duration = Duration::from_millis(3);
/// A second look after an event burst.
const SETTLE: Duration = Duration::from_millis(250);
/// Re-list even without events, in case the daemon dropped some.
const RESYNC: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Discovery health, shown by `/api/state` and `/readyz`.
#[derive(Debug, Default)]
pub struct Discovery {
    pub ready: AtomicBool,
    pub status: Mutex<Status>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    pub provider: String,
    pub docker_host: Option<String>,
    pub connected: bool,
    pub self_container: Option<String>,
    pub syncs: u64,
    pub events: u64,
    pub reconnects: u64,
    pub last_sync_unix_ms: Option<u64>,
    pub last_error: Option<String>,
}

impl Discovery {
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn snapshot(&self) -> Status {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Publishes desired states into the router, adding the `--static` pools and
/// logging what changed.
#[derive(Debug)]
pub struct Publisher {
    pub router: Arc<Router>,
    pub statics: Vec<StaticPool>,
}

impl Publisher {
    pub fn publish(&self, mut d: Desired) {
        desired::add_static(&mut d, &self.statics);
        let old = self.router.load();
        log_changes(&old.desired, &d);
        if self.router.update(d) {
            debug!("routing table swapped");
            crate::health::probe::ensure_probes(&self.router.load());
        }
    }
}

pub struct Watcher {
    pub docker: Docker,
    pub settings: Settings,
    pub publisher: Publisher,
    pub discovery: Arc<Discovery>,
}

impl Watcher {
    /// Run forever (the caller aborts the task at shutdown).
    pub async fn run(self) {
        let mut containers: Vec<ContainerInfo> = Vec::new();
        let mut hints = Hints::default();
        let mut failures: u32 = 0;
        loop {
            let since = unix_now().as_secs() as i64 - 1;
            let mut events = Box::pin(client::events(&self.docker, since));
            match self.relist(&mut containers, &mut hints).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    self.lost(&e, failures).await;
                    continue;
                }
            }
            let mut pending: Option<Instant> = None;
            let mut resync = Instant::now() + RESYNC;
            let why = loop {
                let deadline = pending.unwrap_or(resync);
                tokio::select! {
                    ev = events.next() => match ev {
                        Some(Ok(ev)) => {
                            self.discovery.update(|s| s.events += 1);
                            if hints.apply(&ev) {
                                self.derive_and_publish(&containers, &hints);
                                log_applied(&ev);
                            }
                            pending.get_or_insert_with(|| Instant::now() + COALESCE);
                        }
                        Some(Err(e)) => break e.to_string(),
                        None => break "events stream ended".to_string(),
                    },
                    _ = sleep_until(deadline) => {
                        // After an event burst, look once more a moment later:
                        // the daemon can announce a change before its listing shows it.
                        let after_events = pending.take().is_some();
                        resync = Instant::now() + if after_events { SETTLE } else { RESYNC };
                        if let Err(e) = self.relist(&mut containers, &mut hints).await {
                            break e.to_string();
                        }
                    }
                }
            };
            failures += 1;
            self.lost(&why, failures).await;
        }
    }

    async fn relist(&self, containers: &mut Vec<ContainerInfo>, hints: &mut Hints) -> Result<(), String> {
        let list = client::list(&self.docker).await.map_err(|e| e.to_string())?;
        *containers = list;
        hints.forget_missing(containers);
        self.derive_and_publish(containers, hints);
        self.discovery.update(|s| {
            s.connected = true;
            s.syncs += 1;
            s.last_sync_unix_ms = Some(unix_now().as_millis() as u64);
        });
        if !self.discovery.ready.swap(true, Ordering::Relaxed) {
            info!(containers = containers.len(), "first sync done, ready");
        }
        Ok(())
    }

    fn derive_and_publish(&self, containers: &[ContainerInfo], hints: &Hints) {
        self.publisher.publish(hints.derive(containers, &self.settings));
    }

    /// The daemon went away: keep the table, say so, wait before reconnecting.
    async fn lost(&self, why: &str, failures: u32) {
        let delay = backoff(failures, rand::rng().random_range(0.5..1.0));
        warn!(
            error = why,
            retry_in_ms = delay.as_millis() as u64,
            "Docker connection lost; serving the last known pools"
        );
        self.discovery.update(|s| {
            s.connected = false;
            s.reconnects += 1;
            s.last_error = Some(why.to_string());
        });
        sleep(delay).await;
    }
}

/// Exponential back-off from 100 ms to 5 s; `jitter` in [0.5, 1) spreads
/// several wharf replicas apart.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_MIN.saturating_mul(1u32 << failures.saturating_sub(1).min(10));
    exp.min(BACKOFF_MAX).mul_f64(jitter)
}

/// What the events stream says ahead of the next listing.
#[derive(Debug, Default)]
pub struct Hints {
    /// Received a stop signal: no new requests.
    pub draining: HashSet<String>,
    /// Died or destroyed: gone, even if a listing still shows it running.
    pub dead: HashSet<String>,
    /// Paused (true) or unpaused (false) per the stream, until a listing agrees.
    pub paused: HashMap<String, bool>,
    /// Health per the stream, until a listing agrees.
    pub health: HashMap<String, Health>,
}

impl Hints {
    /// Apply one event. Returns true when the change must be published at
    /// once, before the coming re-list.
    pub fn apply(&mut self, ev: &EventMessage) -> bool {
        if ev.typ != Some(EventMessageTypeEnum::CONTAINER) {
            return false;
        }
        let Some(id) = ev.actor.as_ref().and_then(|a| a.id.clone()) else {
            return false;
        };
        match ev.action.as_deref() {
            Some("kill") => {
                let signal = ev
                    .actor
                    .as_ref()
                    .and_then(|a| a.attributes.as_ref())
                    .and_then(|a| a.get("signal"));
                signal.is_none_or(|s| is_stop_signal(s)) && self.draining.insert(id)
            }
            Some("die") | Some("destroy") => self.dead.insert(id),
            Some("pause") => self.paused.insert(id, true) != Some(true),
            Some("unpause") => self.paused.insert(id, false) != Some(false),
            Some("start") | Some("restart") => {
                self.draining.remove(&id);
                self.dead.remove(&id);
                self.paused.remove(&id);
                self.health.remove(&id);
                false
            }
            Some(a) if a.starts_with("health_status") => {
                let h = match a.rsplit(':').next().map(str::trim) {
                    Some("healthy") => Health::Healthy,
                    Some("unhealthy") => Health::Unhealthy,
                    Some("starting") => Health::Starting,
                    _ => return false,
                };
                self.health.insert(id, h) != Some(h)
            }
            _ => false,
        }
    }

    /// Containers the daemon no longer lists need no hint any more, and a
    /// hint the listing agrees with has done its job.
    pub fn forget_missing(&mut self, listed: &[ContainerInfo]) {
        let find = |id: &String| listed.iter().find(|c| &c.id == id);
        self.draining.retain(|id| find(id).is_some());
        self.dead.retain(|id| find(id).is_some());
        self.paused.retain(|id, p| find(id).is_some_and(|c| c.paused != *p));
        self.health.retain(|id, h| find(id).is_some_and(|c| c.health != *h));
    }

    /// The pools from the listing with the stream's newer knowledge applied
    /// (what the watcher publishes).
    pub fn derive(&self, listed: &[ContainerInfo], settings: &Settings) -> Desired {
        desired::derive(&self.overlay(listed), &self.draining, settings)
    }

    /// The listing with the stream's newer knowledge applied.
    pub fn overlay(&self, listed: &[ContainerInfo]) -> Vec<ContainerInfo> {
        listed
            .iter()
            .filter(|c| !self.dead.contains(&c.id))
            .map(|c| {
                let mut c = c.clone();
                if let Some(p) = self.paused.get(&c.id) {
                    c.paused = *p;
                }
                if let Some(h) = self.health.get(&c.id) {
                    c.health = *h;
                }
                c
            })
            .collect()
    }
}

/// Signals that don't end a process (reload, window change, …) don't drain.
pub fn is_stop_signal(signal: &str) -> bool {
    let s = signal.trim_start_matches("SIG");
    !matches!(
        s,
        "1" | "HUP" | "10" | "USR1" | "12" | "USR2" | "28" | "WINCH" | "18" | "CONT" | "17" | "CHLD" | "0"
    )
}

/// Log a stop signal or exit applied straight from the stream, with the time
/// from the daemon's event to the swapped table (SIGTERM → drained).
fn log_applied(ev: &EventMessage) {
    let actor = ev.actor.as_ref();
    let name = actor
        .and_then(|a| a.attributes.as_ref())
        .and_then(|a| a.get("name"))
        .cloned()
        .unwrap_or_default();
    let id: String = actor
        .and_then(|a| a.id.as_deref())
        .unwrap_or("")
        .chars()
        .take(12)
        .collect();
    let lag_us = ev
        .time_nano
        .map(|t| (unix_now().as_nanos() as i64 - t) / 1000)
        .unwrap_or(-1);
    let action = ev.action.as_deref().unwrap_or("");
    let what = if action == "kill" {
        "stop signal: draining"
    } else {
        "container gone: removed"
    };
    info!(container = %name, id = %id, action, lag_us, "{what}");
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// One log line per backend that appeared, left or changed state, and per new problem.
fn log_changes(old: &Desired, new: &Desired) {
    for (pool, p) in &new.pools {
        for b in &p.backends {
            let before = old
                .pools
                .get(pool)
                .and_then(|op| op.backends.iter().find(|ob| ob.id == b.id && ob.addr == b.addr));
            match before {
                None => {
                    info!(pool, container = %b.container, addr = %b.addr, state = b.status.as_str(), "backend added")
                }
                Some(ob) if ob.status != b.status => {
                    info!(pool, container = %b.container, addr = %b.addr, state = b.status.as_str(), "backend state changed")
                }
                _ => {}
            }
        }
    }
    for (pool, op) in &old.pools {
        for ob in &op.backends {
            let still = new
                .pools
                .get(pool)
                .is_some_and(|p| p.backends.iter().any(|b| b.id == ob.id && b.addr == ob.addr));
            if !still {
                info!(pool, container = %ob.container, addr = %ob.addr, "backend removed");
            }
        }
    }
    for s in new.skipped.iter().filter(|s| !old.skipped.contains(s)) {
        warn!(container = %s.container, reason = %s.reason, "container skipped");
    }
    for p in new.problems.iter().filter(|p| !old.problems.contains(p)) {
        warn!(problem = %p, "label problem");
    }
    for w in new.warnings.iter().filter(|w| !old.warnings.contains(w)) {
        warn!(warning = %w, "label warning");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;
    use std::collections::HashMap;

    fn ev(action: &str, signal: Option<&str>) -> EventMessage {
        let mut attrs = HashMap::new();
        if let Some(s) = signal {
            attrs.insert("signal".to_string(), s.to_string());
        }
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("c1".into()),
                attributes: Some(attrs),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sigterm_drains_at_once_and_start_undrains() {
        let mut h = Hints::default();
        assert!(h.apply(&ev("kill", Some("15"))));
        assert!(h.draining.contains("c1"));
        assert!(
            !h.apply(&ev("kill", Some("9"))),
            "already draining: nothing new to publish"
        );
        assert!(h.apply(&ev("die", None)));
        assert!(h.dead.contains("c1"));
        assert!(!h.apply(&ev("start", None)));
        assert!(h.draining.is_empty() && h.dead.is_empty());
    }

    #[test]
    fn reload_signals_do_not_drain() {
        let mut h = Hints::default();
        assert!(!h.apply(&ev("kill", Some("1"))));
        assert!(!h.apply(&ev("kill", Some("SIGHUP"))));
        assert!(h.draining.is_empty());
    }

    fn listed(paused: bool, health: Health) -> ContainerInfo {
        ContainerInfo {
            id: "c1".into(),
            name: "c1".into(),
            labels: HashMap::new(),
            networks: Default::default(),
            exposed_ports: vec![],
            created: 0,
            paused,
            health,
        }
    }

    #[test]
    fn pause_and_health_events_override_a_lagging_listing_until_it_agrees() {
        let mut h = Hints::default();
        assert!(h.apply(&ev("pause", None)));
        assert!(h.apply(&ev("health_status: unhealthy", None)));
        let stale = [listed(false, Health::Healthy)];
        let seen = h.overlay(&stale);
        assert!(seen[0].paused && seen[0].health == Health::Unhealthy);
        h.forget_missing(&stale);
        assert_eq!(
            h.paused.len() + h.health.len(),
            2,
            "listing still disagrees: hints kept"
        );
        h.forget_missing(&[listed(true, Health::Unhealthy)]);
        assert!(
            h.paused.is_empty() && h.health.is_empty(),
            "listing agrees: hints dropped"
        );
        assert!(h.apply(&ev("unpause", None)));
        assert!(!h.overlay(&[listed(true, Health::Unhealthy)])[0].paused);
    }

    #[test]
    fn what_is_published_applies_the_hints_to_a_lagging_listing() {
        let mut c1 = listed(false, Health::None);
        c1.labels.insert("wharf.pool".into(), "web".into());
        c1.networks.insert("net".into(), "172.18.0.2".parse().ok());
        let mut c2 = c1.clone();
        c2.id = "c2".into();
        c2.name = "c2".into();
        c2.networks.insert("net".into(), "172.18.0.3".parse().ok());
        let settings = Settings {
            label_prefix: "wharf".into(),
            ..Settings::default()
        };
        let stale = [c1, c2];
        let states = |h: &Hints| -> Vec<String> {
            let d = h.derive(&stale, &settings);
            d.pools["web"]
                .backends
                .iter()
                .map(|b| format!("{}={}", b.id, b.status.as_str()))
                .collect()
        };
        let mut h = Hints::default();
        assert_eq!(states(&h), ["c1=ready", "c2=ready"]);
        h.apply(&ev("pause", None));
        assert_eq!(states(&h), ["c1=unhealthy", "c2=ready"], "paused per the stream");
        h.apply(&ev("unpause", None));
        h.apply(&ev("health_status: unhealthy", None));
        assert_eq!(states(&h), ["c1=unhealthy", "c2=ready"], "unhealthy per the stream");
        h.apply(&ev("health_status: healthy", None));
        assert_eq!(states(&h), ["c1=ready", "c2=ready"]);
        h.apply(&ev("kill", Some("15")));
        assert_eq!(states(&h), ["c1=draining", "c2=ready"]);
        h.apply(&ev("die", None));
        assert_eq!(states(&h), ["c2=ready"], "dead per the stream, listed still");
    }

    #[test]
    fn hints_are_forgotten_once_the_daemon_stops_listing_the_container() {
        let mut h = Hints::default();
        h.apply(&ev("kill", Some("15")));
        h.apply(&ev("die", None));
        h.forget_missing(&[]);
        assert!(h.draining.is_empty() && h.dead.is_empty());
    }

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(3, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(30, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(1, 0.5), Duration::from_millis(50));
    }
}
