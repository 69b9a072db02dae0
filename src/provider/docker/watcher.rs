//! Keeps the routing table in step with Docker.
//!
//! Events are hints, never the state: after an event the watcher re-lists
//! and re-derives everything, so a missed or reordered event cannot leave a
//! ghost backend. The sequence, and the race each step closes:
//!
//! 1. subscribe to events `since` one second before now, then list: events
//!    that happen during the listing are not lost, because the daemon replays
//!    its recent history;
//! 2. on an event that can matter — about a container carrying a label of
//!    ours, one listed as a candidate, or wharf's own — that needs facts the
//!    event lacks (a `start`: its addresses), wait a few milliseconds for
//!    the rest of its burst (`docker compose up --scale` emits dozens), then
//!    look up just the containers it named ([`super::lookup`]), not the
//!    whole host; events about other containers cost nothing, however many
//!    containers the host runs;
//! 3. an event that must act at once (a stop signal, an exit, a pause, a
//!    health change: see [`super::hints`]) is applied *the moment it
//!    arrives*: a stop signal or an exit takes the container's backends out
//!    of the current table on the spot ([`Publisher::drain_now`]: no table
//!    to build), and the table that says so follows 2 ms later, one for all
//!    the stop signals of a burst; a pause or a health change is published
//!    at once, from the last listing plus the hints. A re-list never blocks
//!    it: listings run beside the events stream, not in its way, and an
//!    event that arrives during a listing asks for one more listing after it.
//!    Events already waiting in the stream are applied together, then
//!    published once, and a listing keeps only the candidates: the cost of
//!    a burst does not grow with the number of events times the host's
//!    containers (a `docker rm -f` of 100 backends on a host running 1,000
//!    other containers drained its last backend 11.8 s after the kill);
//! 4. every burst of events that matter is followed by one full re-list
//!    250 ms later (the daemon can announce a change before its listing
//!    shows it), and by one more after it if events arrived meanwhile: at
//!    most one full listing at a time, never one per event (during a
//!    `docker rm -f` of 100 containers, listing after each event kept the
//!    daemon and wharf listing the whole host back to back);
//! 5. when the stream ends or fails, keep the current table, back off with
//!    jitter, reconnect and re-list; also re-list every minute regardless.
//!
//! The Docker API comes in through [`Source`], so the loop runs under paused
//! time in unit tests with a scripted source.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use rand::Rng;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{info, warn};

use super::containers::{ContainerInfo, Settings};
use super::hints::{self, log_applied, unix_now, Event, Hints};
use super::lookup::{self, Looked};
use crate::provider::Publisher;

/// How long a burst of events is gathered before one look-up.
pub const COALESCE: Duration = Duration::from_millis(3);
/// How long stop signals already applied ([`Publisher::drain_now`]) are
/// gathered before the table that says so.
pub const GATHER: Duration = Duration::from_millis(2);
/// The full re-list after an event burst.
pub const SETTLE: Duration = Duration::from_millis(250);
/// Re-list even without events, in case the daemon dropped some.
pub const RESYNC: Duration = Duration::from_secs(60);
/// Events applied before one publish, at most (the rest wait one turn).
pub const EVENT_BATCH: usize = 512;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What a listing or a look-up answers.
pub type Listed = Result<Vec<ContainerInfo>, String>;

/// The Docker calls the watcher makes.
pub trait Source: Send + Sync + 'static {
    /// Running (and paused) containers.
    fn list(&self) -> BoxFuture<'static, Listed>;
    /// Those of containers `ids` that are running (or paused).
    fn look(&self, ids: Vec<String>) -> BoxFuture<'static, Listed>;
    /// Container and network events from `since_unix` (seconds) on.
    fn events(&self, since_unix: i64) -> BoxStream<'static, Result<Event, String>>;
}

pub struct Watcher<S> {
    pub source: S,
    pub settings: Settings,
    pub out: Publisher,
}

impl<S: Source> Watcher<S> {
    /// Run forever (the caller aborts the task at shutdown).
    pub async fn run(self) {
        let mut seen = Seen::default();
        let mut failures: u32 = 0;
        loop {
            let why = self.connected(&mut seen, &mut failures).await;
            failures += 1;
            self.lost(&why, failures).await;
        }
    }

    /// One connection's life: subscribe, list, follow the events until the
    /// stream or a call fails; returns why.
    async fn connected(&self, seen: &mut Seen, failures: &mut u32) -> String {
        let Seen {
            containers,
            hints,
            candidates,
            looked,
        } = seen;
        looked.clear();
        let since = unix_now().as_secs() as i64 - 1;
        let mut events = self.source.events(since);
        // Calls are numbered as they start, so answers that cross can be
        // ordered (see [`super::lookup`]).
        let mut calls: u64 = 1;
        let mut listing = Some((calls, self.source.list()));
        // Containers to look up, and when; the look-up in flight.
        let mut want: HashSet<String> = HashSet::new();
        let mut look_at: Option<Instant> = None;
        let mut lookup: Option<(u64, HashSet<String>, BoxFuture<'static, Listed>)> = None;
        // When the table catches up with stop signals already applied.
        let mut publish_at: Option<Instant> = None;
        // An event arrived while a listing was in flight: list once more after it.
        let mut stale = false;
        // When the next full re-list starts: after a burst, else at the resync.
        let mut pending: Option<Instant> = None;
        let mut resync = Instant::now() + RESYNC;
        loop {
            tokio::select! {
                ev = events.next() => {
                    // This event and every one already waiting behind it (a
                    // `docker rm -f` of 100 containers queues hundreds): all
                    // their hints, then one publish. Publishing per event made
                    // a burst's last kill wait for hundreds of table builds.
                    let mut next = Some(ev);
                    let mut changed = Vec::new();
                    let mut drained = false;
                    let mut matter = false;
                    let mut n = 0;
                    while let Some(ev) = next.take() {
                        let ev = match ev {
                            Some(Ok(ev)) => ev,
                            Some(Err(e)) => return e,
                            None => return "events stream ended".to_string(),
                        };
                        n += 1;
                        self.out.control().event(&ev.action);
                        if hints::matters(&ev, candidates, &self.settings) {
                            matter = true;
                            self.out.control().pending(&ev.action, &ev.name, ev.time_nano);
                            if lookup::needs_lookup(&ev) {
                                want.insert(ev.id.clone());
                            }
                            if hints.apply(&ev) {
                                // A stop signal or an exit leaves the current
                                // table at once; the table that says so follows
                                // (one for the whole burst). The daemon hands
                                // events over one by one, so a table per event
                                // made a burst's last kill wait for all of them.
                                if hints.out_of_rotation(&ev.id) && self.out.drain_now(&ev.id) {
                                    log_applied(&ev);
                                    drained = true;
                                } else {
                                    changed.push(ev);
                                }
                            }
                        }
                        if n < EVENT_BATCH {
                            next = events.next().now_or_never();
                        }
                    }
                    self.out.status(|s| s.events += n as u64);
                    if !changed.is_empty() {
                        self.out.publish(hints.derive(containers, &self.settings));
                        changed.iter().for_each(log_applied);
                        publish_at = None;
                    } else if drained {
                        publish_at.get_or_insert_with(|| Instant::now() + GATHER);
                    }
                    if !want.is_empty() {
                        look_at.get_or_insert_with(|| Instant::now() + COALESCE);
                    }
                    if matter {
                        if listing.is_some() {
                            stale = true;
                        } else {
                            pending.get_or_insert_with(|| Instant::now() + SETTLE);
                        }
                    }
                },
                found = async { lookup.as_mut().expect("guarded").2.as_mut().await }, if lookup.is_some() => {
                    let (seq, ids, _) = lookup.take().expect("guarded");
                    let mut found = match found {
                        Ok(found) => found,
                        Err(e) => return e,
                    };
                    let keep = hints::candidates(&found, &self.settings);
                    if !self.settings.exposed_by_default {
                        found.retain(|c| keep.contains(&c.id));
                    }
                    candidates.extend(keep);
                    looked.apply_lookup(seq, &ids, found, containers);
                    self.out.publish(hints.derive(containers, &self.settings));
                    publish_at = None;
                    self.out.status(|s| s.lookups += 1);
                },
                listed = async { listing.as_mut().expect("guarded").1.as_mut().await }, if listing.is_some() => {
                    let (seq, _) = listing.take().expect("guarded");
                    match listed {
                        Ok(mut list) => {
                            *failures = 0;
                            looked.apply_listing(seq, &mut list);
                            *candidates = hints::candidates(&list, &self.settings);
                            // Only candidates can be members (unless every
                            // container is exposed): the rest would make each
                            // publish between listings grow with the host.
                            if !self.settings.exposed_by_default {
                                list.retain(|c| candidates.contains(&c.id));
                            }
                            *containers = list;
                            hints.forget_missing(containers);
                            if !self.out.publish(hints.derive(containers, &self.settings)) {
                                self.out.control().unchanged();
                            }
                            publish_at = None;
                            self.out.status(|s| {
                                s.connected = true;
                                s.syncs += 1;
                                s.last_sync_unix_ms = Some(unix_now().as_millis() as u64);
                            });
                            self.out.synced();
                            if std::mem::take(&mut stale) {
                                pending.get_or_insert_with(|| Instant::now() + SETTLE);
                            }
                        }
                        Err(e) => return e,
                    }
                }
                _ = sleep_until(publish_at.unwrap_or(resync)), if publish_at.is_some() => {
                    publish_at = None;
                    self.out.publish(hints.derive(containers, &self.settings));
                }
                _ = sleep_until(look_at.unwrap_or(resync)), if look_at.is_some() && lookup.is_none() => {
                    look_at = None;
                    calls += 1;
                    let ids = std::mem::take(&mut want);
                    let call = self.source.look(ids.iter().cloned().collect());
                    lookup = Some((calls, ids, call));
                }
                _ = sleep_until(pending.unwrap_or(resync)), if listing.is_none() => {
                    pending = None;
                    resync = Instant::now() + RESYNC;
                    calls += 1;
                    listing = Some((calls, self.source.list()));
                }
            }
        }
    }

    /// The daemon went away: keep the table, say so, wait before reconnecting.
    async fn lost(&self, why: &str, failures: u32) {
        let delay = backoff(failures, rand::rng().random_range(0.5..1.0));
        warn!(
            error = why,
            retry_in_ms = delay.as_millis() as u64,
            "Docker connection lost; serving the last known pools"
        );
        self.out.status(|s| {
            s.connected = false;
            s.reconnects += 1;
            s.last_error = Some(why.to_string());
        });
        sleep(delay).await;
        info!("reconnecting to Docker");
    }
}

/// What the watcher knows between listings (kept across reconnects).
#[derive(Default)]
struct Seen {
    /// The last listing.
    containers: Vec<ContainerInfo>,
    /// The stream's newer knowledge.
    hints: Hints,
    /// The containers whose events matter ([`hints::candidates`]).
    candidates: HashSet<String>,
    /// What recent look-ups found ([`super::lookup`]).
    looked: Looked,
}

/// Exponential back-off from 100 ms to 5 s; `jitter` in [0.5, 1) spreads
/// several wharf replicas apart.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_MIN.saturating_mul(1u32 << failures.saturating_sub(1).min(10));
    exp.min(BACKOFF_MAX).mul_f64(jitter)
}

#[cfg(test)]
mod tests;
