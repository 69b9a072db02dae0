//! Keeps the routing table in step with a swarm.
//!
//! Swarm emits no task events, so the tasks are polled: one filtered call
//! (`desired-state=running`) every [`POLL`], and every [`FAST_POLL`] for
//! [`FAST_FOR`] after a poll saw tasks move or after a service event
//! (`docker service scale`/`update` announce a change before its tasks
//! move). The events stream is a hint, never the state:
//! - a service event re-lists the services (labels) and polls at once;
//! - a stop signal (`kill`) to a task's container on this node drains that
//!   task at once, before the next poll;
//! - any other event of a task container polls at once.
//!
//! A task that leaves the filtered listing (Swarm set its desired state to
//! `shutdown` or `remove`) is looked up on its own until it stops running:
//! it drains from the poll that sees Swarm's decision, which comes before
//! its container's stop signal. When the API fails, the last table stays,
//! the status says so, and the loop reconnects with back-off.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use rand::Rng;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{info, warn};

use super::client::{SwarmClient, SwarmEvent};
use super::tasks::{self, ServiceInfo, TaskInfo};
use crate::provider::docker::hints::{is_stop_signal, unix_now};
use crate::provider::docker::watcher::backoff;
use crate::provider::docker::Settings;
use crate::provider::Publisher;

/// The task poll when nothing moves.
pub const POLL: Duration = Duration::from_secs(1);
/// The task poll while tasks start or stop.
pub const FAST_POLL: Duration = Duration::from_millis(100);
/// Fast polls after a service event.
pub const FAST_FOR: Duration = Duration::from_secs(10);
/// Re-list the services (their labels) even without events.
pub const SERVICES_EVERY: Duration = Duration::from_secs(30);
/// An event's burst is gathered this long before one poll.
const COALESCE: Duration = Duration::from_millis(5);

/// The Engine API calls the watcher makes (a scripted one in unit tests).
pub trait Source: Send + Sync + 'static {
    fn tasks(&self) -> BoxFuture<'static, Result<Vec<TaskInfo>, String>>;
    fn task(&self, id: String) -> BoxFuture<'static, Result<Option<TaskInfo>, String>>;
    fn services(&self) -> BoxFuture<'static, Result<HashMap<String, ServiceInfo>, String>>;
    fn events(&self, since_unix: i64) -> BoxStream<'static, Result<SwarmEvent, String>>;
}

impl Source for SwarmClient {
    fn tasks(&self) -> BoxFuture<'static, Result<Vec<TaskInfo>, String>> {
        let c = self.clone();
        Box::pin(async move { c.tasks().await })
    }
    fn task(&self, id: String) -> BoxFuture<'static, Result<Option<TaskInfo>, String>> {
        let c = self.clone();
        Box::pin(async move { c.task(&id).await })
    }
    fn services(&self) -> BoxFuture<'static, Result<HashMap<String, ServiceInfo>, String>> {
        let c = self.clone();
        Box::pin(async move { c.services().await })
    }
    fn events(&self, since_unix: i64) -> BoxStream<'static, Result<SwarmEvent, String>> {
        SwarmClient::events(self, since_unix)
    }
}

/// What the watcher knows (kept across reconnects).
#[derive(Debug, Default)]
pub struct Seen {
    /// The last poll: live tasks, and leaving ones still running.
    pub tasks: Vec<TaskInfo>,
    pub services: HashMap<String, ServiceInfo>,
    /// Tasks whose container got a stop signal on this node.
    pub draining: HashSet<String>,
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
            let delay = backoff(failures, rand::rng().random_range(0.5..1.0));
            warn!(error = %why, retry_in_ms = delay.as_millis() as u64, "Swarm API lost; serving the last known pools");
            self.out.status(|s| {
                s.connected = false;
                s.reconnects += 1;
                s.last_error = Some(why.clone());
            });
            sleep(delay).await;
            info!("reconnecting to the Swarm API");
        }
    }

    async fn connected(&self, seen: &mut Seen, failures: &mut u32) -> String {
        let since = unix_now().as_secs() as i64 - 1;
        let mut events = self.source.events(since);
        let mut services_due = true;
        let mut services_next = Instant::now();
        let mut fast_until = Instant::now();
        let mut next = Instant::now();
        loop {
            tokio::select! {
                ev = events.next() => {
                    let ev = match ev {
                        Some(Ok(ev)) => ev,
                        Some(Err(e)) => return e,
                        None => return "events stream ended".into(),
                    };
                    self.out.status(|s| s.events += 1);
                    let now = Instant::now();
                    match ev {
                        SwarmEvent::Service { action, name } => {
                            self.out.control().event(&action);
                            self.out.control().pending(&format!("service {action}"), &name, None);
                            services_due = true;
                        }
                        // exec_* (every HEALTHCHECK probe) and the like change nothing.
                        SwarmEvent::TaskContainer { action, .. } if !matters(&action) => continue,
                        SwarmEvent::TaskContainer { action, task_id, signal } => {
                            self.out.control().event(&action);
                            let stop = action == "kill" && stops(signal.as_deref());
                            // Only news when Swarm's decision has not drained it already.
                            let news = seen.tasks.iter().any(|t| t.id == task_id && t.is_live() && t.desired == "running");
                            if stop && news && seen.draining.insert(task_id.clone()) {
                                self.out.control().pending("kill", &task_id, None);
                                self.out.publish(self.derive(seen));
                                info!(task = %task_id, "stop signal: draining");
                            }
                        }
                        SwarmEvent::Other => continue,
                    }
                    fast_until = now + FAST_FOR;
                    next = next.min(now + COALESCE);
                }
                _ = sleep_until(next) => {
                    if Instant::now() >= services_next {
                        services_due = true;
                        services_next = Instant::now() + SERVICES_EVERY;
                    }
                    let before = fingerprint(&seen.tasks);
                    if let Err(e) = self.poll(seen, &mut services_due).await {
                        return e;
                    }
                    *failures = 0;
                    let now = Instant::now();
                    // Tasks moving (created, starting, stopping) are polled
                    // fast until they settle; one stuck in `pending` (no node
                    // fits it) is not, once it has not moved for FAST_FOR.
                    if fingerprint(&seen.tasks) != before {
                        fast_until = now + FAST_FOR;
                    }
                    next = now + if now < fast_until { FAST_POLL } else { POLL };
                }
            }
        }
    }

    /// One poll: the live tasks, each task that left the listing while still
    /// running, the services when due or when a task names an unknown one.
    async fn poll(&self, seen: &mut Seen, services_due: &mut bool) -> Result<(), String> {
        let mut listed = self.source.tasks().await?;
        let ids: HashSet<&str> = listed.iter().map(|t| t.id.as_str()).collect();
        let gone: Vec<String> = seen
            .tasks
            .iter()
            .filter(|t| t.is_live() && !ids.contains(t.id.as_str()))
            .map(|t| t.id.clone())
            .collect();
        for id in gone {
            if let Some(t) = self.source.task(id).await? {
                if t.is_live() {
                    listed.push(t);
                }
            }
        }
        if *services_due || listed.iter().any(|t| !seen.services.contains_key(&t.service_id)) {
            seen.services = self.source.services().await?;
            *services_due = false;
        }
        seen.draining.retain(|id| is_live(&listed, id));
        seen.tasks = listed;
        if !self.out.publish(self.derive(seen)) {
            self.out.control().unchanged();
        }
        self.out.status(|s| {
            s.connected = true;
            s.syncs += 1;
            s.last_sync_unix_ms = Some(unix_now().as_millis() as u64);
        });
        self.out.synced();
        Ok(())
    }

    fn derive(&self, seen: &Seen) -> crate::model::Desired {
        tasks::derive(&seen.tasks, &seen.services, &seen.draining, &self.settings)
    }
}

/// What a poll can change about the tasks (which exist, their states), hashed.
fn fingerprint(tasks: &[TaskInfo]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut v: Vec<(&str, &str, &str)> = tasks
        .iter()
        .map(|t| (t.id.as_str(), t.state.as_str(), t.desired.as_str()))
        .collect();
    v.sort_unstable();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn is_live(tasks: &[TaskInfo], id: &str) -> bool {
    tasks.iter().any(|t| t.id == id && t.is_live())
}

/// The task container events that can change a task's state.
pub fn matters(action: &str) -> bool {
    matches!(action, "start" | "die" | "kill" | "stop" | "oom" | "destroy") || action.starts_with("health_status")
}

/// Is this `kill` event's signal one that stops the container?
pub fn stops(signal: Option<&str>) -> bool {
    signal.is_none_or(is_stop_signal)
}

#[cfg(test)]
mod tests;
