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
//!    ours, one listed as a candidate, or wharf's own — wait a few
//!    milliseconds for the rest of its burst (`docker compose up --scale`
//!    emits dozens), then re-list once; events about other containers cost
//!    no listing, however many containers the host runs;
//! 3. an event that must act at once (a stop signal, an exit, a pause, a
//!    health change: see [`super::hints`]) is published *the moment it
//!    arrives*, from the last listing plus the hints. A re-list never blocks
//!    it: listings run beside the events stream, not in its way, and an
//!    event that arrives during a listing asks for one more listing after it;
//! 4. every burst is followed by one more re-list 250 ms later (the daemon
//!    can announce a change before its listing shows it);
//! 5. when the stream ends or fails, keep the current table, back off with
//!    jitter, reconnect and re-list; also re-list every minute regardless.
//!
//! The Docker API comes in through [`Source`], so the loop runs under paused
//! time in unit tests with a scripted source.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use rand::Rng;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{info, warn};

use super::containers::{ContainerInfo, Settings};
use super::hints::{self, log_applied, unix_now, Event, Hints};
use crate::provider::Publisher;

/// How long a burst of events is gathered before one re-list.
pub const COALESCE: Duration = Duration::from_millis(3);
/// A second look after an event burst.
pub const SETTLE: Duration = Duration::from_millis(250);
/// Re-list even without events, in case the daemon dropped some.
pub const RESYNC: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The two Docker calls the watcher makes.
pub trait Source: Send + Sync + 'static {
    /// Running (and paused) containers.
    fn list(&self) -> BoxFuture<'static, Result<Vec<ContainerInfo>, String>>;
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
    /// stream or a listing fails; returns why.
    async fn connected(&self, seen: &mut Seen, failures: &mut u32) -> String {
        let Seen {
            containers,
            hints,
            candidates,
        } = seen;
        let since = unix_now().as_secs() as i64 - 1;
        let mut events = self.source.events(since);
        let mut listing = Some(self.source.list());
        // An event arrived while a listing was in flight: list once more after it.
        let mut stale = false;
        // When the next re-list starts: after a burst, else at the resync.
        let mut pending: Option<Instant> = None;
        let mut resync = Instant::now() + RESYNC;
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        self.out.status(|s| s.events += 1);
                        self.out.control().event(&ev.action);
                        if !hints::matters(&ev, candidates, &self.settings) {
                            continue;
                        }
                        self.out.control().pending(&ev.action, &ev.name, ev.time_nano);
                        if hints.apply(&ev) {
                            self.out.publish(hints.derive(containers, &self.settings));
                            log_applied(&ev);
                        }
                        if listing.is_some() {
                            stale = true;
                        } else {
                            pending.get_or_insert_with(|| Instant::now() + COALESCE);
                        }
                    }
                    Some(Err(e)) => return e,
                    None => return "events stream ended".to_string(),
                },
                listed = async { listing.as_mut().expect("guarded").await }, if listing.is_some() => {
                    listing = None;
                    match listed {
                        Ok(list) => {
                            *failures = 0;
                            *containers = list;
                            *candidates = hints::candidates(containers, &self.settings);
                            hints.forget_missing(containers);
                            if !self.out.publish(hints.derive(containers, &self.settings)) {
                                self.out.control().unchanged();
                            }
                            self.out.status(|s| {
                                s.connected = true;
                                s.syncs += 1;
                                s.last_sync_unix_ms = Some(unix_now().as_millis() as u64);
                            });
                            self.out.synced();
                            if std::mem::take(&mut stale) {
                                pending.get_or_insert_with(|| Instant::now() + COALESCE);
                            }
                        }
                        Err(e) => return e,
                    }
                }
                _ = sleep_until(pending.unwrap_or(resync)), if listing.is_none() => {
                    let after_events = pending.take().is_some();
                    resync = Instant::now() + if after_events { SETTLE } else { RESYNC };
                    listing = Some(self.source.list());
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
    candidates: std::collections::HashSet<String>,
}

/// Exponential back-off from 100 ms to 5 s; `jitter` in [0.5, 1) spreads
/// several wharf replicas apart.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_MIN.saturating_mul(1u32 << failures.saturating_sub(1).min(10));
    exp.min(BACKOFF_MAX).mul_f64(jitter)
}

#[cfg(test)]
mod tests;
