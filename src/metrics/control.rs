//! Control-plane metrics: Docker events by action, routing-table swaps, and
//! the time from a Docker event to the table that reflects it, plus the
//! recent events the dashboard lists. Recorded by the provider and the
//! publisher (never on the request path), held in [`crate::provider::Discovery`].
//!
//! Event → swap: an event that matters (it concerns a candidate container)
//! is noted as pending with its time (Docker's `timeNano`, else its arrival).
//! The next swap — from the event's own hint, or from the listing it
//! triggered — observes every pending event. A listing that changes nothing
//! settles them without an observation (the event changed nothing routable).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// How many recent events the dashboard sees.
pub const RECENT: usize = 20;

/// Docker event actions counted by name; any other counts as `other`
/// (`exec_start: sh -c …` would otherwise make the label unbounded).
const ACTIONS: [&str; 14] = [
    "create",
    "start",
    "restart",
    "kill",
    "die",
    "stop",
    "destroy",
    "pause",
    "unpause",
    "health_status",
    "connect",
    "disconnect",
    "rename",
    "update",
];

/// The bounded `action` label of a Docker event action.
pub fn action_label(action: &str) -> &'static str {
    let head = action.split(':').next().unwrap_or_default().trim();
    ACTIONS.iter().find(|a| **a == head).copied().unwrap_or("other")
}

/// A discovery event as the dashboard lists it.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Recent {
    pub unix_ms: u64,
    pub action: String,
    pub container: String,
    /// Event → swapped table, once a swap reflected it.
    pub swap_ms: Option<f64>,
    /// `true` while no swap or listing has settled it.
    pub pending: bool,
}

type ActionLabels = Vec<(&'static str, &'static str)>;

#[derive(Debug)]
pub struct Control {
    pub events: Family<ActionLabels, Counter>,
    pub swaps: Counter,
    pub event_to_swap: Histogram,
    recent: Mutex<VecDeque<Recent>>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            events: Family::default(),
            swaps: Counter::default(),
            event_to_swap: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            recent: Mutex::default(),
        }
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

impl Control {
    /// Any event from the provider.
    pub fn event(&self, action: &str) {
        self.events.get_or_create(&vec![("action", action_label(action))]).inc();
    }

    /// An event that may change the table, at `time_ns` (Unix; `None`: now).
    pub fn pending(&self, action: &str, container: &str, time_ns: Option<i64>) {
        let unix_ms = time_ns.map_or_else(now_ms, |ns| ns as f64 / 1e6);
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == RECENT {
            r.pop_front();
        }
        r.push_back(Recent {
            unix_ms: unix_ms as u64,
            action: action.to_string(),
            container: container.trim_start_matches('/').to_string(),
            swap_ms: None,
            pending: true,
        });
    }

    /// The table was swapped: count it, observe the pending events.
    pub fn swapped(&self) {
        self.swaps.inc();
        self.settle(true);
    }

    /// A listing published no change: pending events changed nothing.
    pub fn unchanged(&self) {
        self.settle(false);
    }

    fn settle(&self, swapped: bool) {
        let now = now_ms();
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        for e in r.iter_mut().filter(|e| e.pending) {
            e.pending = false;
            if swapped {
                let ms = (now - e.unix_ms as f64).max(0.0);
                e.swap_ms = Some((ms * 1e3).round() / 1e3);
                self.event_to_swap.observe(ms / 1e3);
            }
        }
    }

    /// The recent events, oldest first.
    pub fn recent(&self) -> Vec<Recent> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_bounded_and_health_status_loses_its_value() {
        assert_eq!(action_label("health_status: healthy"), "health_status");
        assert_eq!(action_label("exec_start: sh -c 'x'"), "other");
        assert_eq!(action_label("kill"), "kill");
    }

    #[test]
    fn a_swap_observes_pending_events_and_a_no_change_listing_settles_them() {
        let c = Control::default();
        c.pending("start", "/web-1", None);
        c.swapped();
        c.pending("kill", "db", None);
        c.unchanged();
        c.swapped();
        let r = c.recent();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].container, "web-1");
        assert!(r[0].swap_ms.is_some() && !r[0].pending);
        assert_eq!(r[1].swap_ms, None, "settled by an unchanged listing");
        assert_eq!(c.swaps.get(), 2);
        for i in 0..RECENT + 5 {
            c.pending("stop", &format!("c{i}"), None);
        }
        assert_eq!(c.recent().len(), RECENT);
    }
}
