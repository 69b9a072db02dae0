//! What the Docker events stream says ahead of the next listing (pure).
//!
//! Events are hints, never the state: the watcher re-lists after them. But
//! some must act before the re-list: a `kill` (the first sign of `docker
//! stop`) drains its container at once; `die` and `destroy` remove it even
//! while a listing taken a moment earlier still shows it running; `pause`,
//! `unpause` and `health_status` override the listing until it agrees
//! (Docker 20.10 logs these events before updating what it lists). A hint the
//! listing agrees with, or about a container the daemon no longer lists, is
//! forgotten.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::info;

use super::containers::{self, ContainerInfo, Health, Settings};
use crate::model::Desired;

/// One Docker event, as wharf needs it (no bollard type beyond the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// `start`, `kill`, `health_status: healthy`, `connect`, …
    pub action: String,
    /// The container's id (for network events, the container connected or
    /// disconnected).
    pub id: String,
    /// The container's name (container events only).
    pub name: String,
    /// The signal of a `kill` event.
    pub signal: Option<String>,
    /// When the daemon logged it, unix nanoseconds.
    pub time_nano: Option<i64>,
    /// The rest of the actor's attributes: for container events, the
    /// container's labels (and `image`, `exitCode`, …).
    pub attributes: HashMap<String, String>,
}

impl Event {
    /// Does the event's container carry a label under `prefix.` (e.g. `wharf.`)?
    pub fn has_label_under(&self, prefix_dot: &str) -> bool {
        self.attributes.keys().any(|k| k.starts_with(prefix_dot))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Container,
    Network,
    Other,
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
    pub fn apply(&mut self, ev: &Event) -> bool {
        if ev.kind != EventKind::Container || ev.id.is_empty() {
            return false;
        }
        let id = ev.id.clone();
        match ev.action.as_str() {
            "kill" => ev.signal.as_deref().is_none_or(is_stop_signal) && self.draining.insert(id),
            "die" | "destroy" => self.dead.insert(id),
            "pause" => self.paused.insert(id, true) != Some(true),
            "unpause" => self.paused.insert(id, false) != Some(false),
            "start" | "restart" => {
                self.draining.remove(&id);
                self.dead.remove(&id);
                self.paused.remove(&id);
                self.health.remove(&id);
                false
            }
            a if a.starts_with("health_status") => {
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

    /// Is container `id` out of rotation per the stream (a stop signal or
    /// an exit)? Then it can leave the current table at once, before the
    /// next one is built ([`crate::provider::Publisher::drain_now`]).
    pub fn out_of_rotation(&self, id: &str) -> bool {
        self.draining.contains(id) || self.dead.contains(id)
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
        let seen = self.overlay(listed);
        containers::derive_refs(seen.iter().map(|c| c.as_ref()).collect(), &self.draining, settings)
    }

    /// The listing with the stream's newer knowledge applied; only the
    /// containers a pause or health hint changes are copied.
    pub fn overlay<'a>(&self, listed: &'a [ContainerInfo]) -> Vec<Cow<'a, ContainerInfo>> {
        listed
            .iter()
            .filter(|c| !self.dead.contains(&c.id))
            .map(|c| {
                let paused = self.paused.get(&c.id).filter(|p| **p != c.paused);
                let health = self.health.get(&c.id).filter(|h| **h != c.health);
                if paused.is_none() && health.is_none() {
                    return Cow::Borrowed(c);
                }
                let mut c = c.clone();
                if let Some(p) = paused {
                    c.paused = *p;
                }
                if let Some(h) = health {
                    c.health = *h;
                }
                Cow::Owned(c)
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

/// The containers whose events can change what wharf routes: those carrying
/// a label under the prefix (members, and those skipped for a bad label),
/// and wharf's own (its networks decide which addresses are reachable).
pub fn candidates(listed: &[ContainerInfo], settings: &Settings) -> HashSet<String> {
    let prefix_dot = format!("{}.", settings.label_prefix.trim_end_matches('.'));
    listed
        .iter()
        .filter(|c| {
            settings.self_id.as_deref() == Some(c.id.as_str()) || c.labels.keys().any(|k| k.starts_with(&prefix_dot))
        })
        .map(|c| c.id.clone())
        .collect()
}

/// Can this event change what wharf routes? An event about a container that
/// carries no label of ours, is not a candidate, and cannot become a member
/// (labels are fixed at creation; `--exposed-by-default` off) needs no
/// re-list: on a busy host most events are about other people's containers.
pub fn matters(ev: &Event, candidates: &HashSet<String>, settings: &Settings) -> bool {
    if settings.exposed_by_default || candidates.contains(&ev.id) || settings.self_id.as_deref() == Some(ev.id.as_str())
    {
        return true;
    }
    let prefix_dot = format!("{}.", settings.label_prefix.trim_end_matches('.'));
    ev.kind == EventKind::Container && ev.has_label_under(&prefix_dot)
}

/// Log a stop signal or exit applied straight from the stream, with the time
/// from the daemon's event to the backend out of rotation (SIGTERM → drained).
pub fn log_applied(ev: &Event) {
    let id: String = ev.id.chars().take(12).collect();
    let lag_us = ev
        .time_nano
        .map(|t| (unix_now().as_nanos() as i64 - t) / 1000)
        .unwrap_or(-1);
    let action = ev.action.as_str();
    let what = if action == "kill" {
        "stop signal: draining"
    } else {
        "container gone: removed"
    };
    info!(container = %ev.name, id = %id, action, lag_us, "{what}");
}

pub fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, signal: Option<&str>) -> Event {
        Event {
            kind: EventKind::Container,
            action: action.into(),
            id: "c1".into(),
            name: "c1".into(),
            signal: signal.map(String::from),
            time_nano: None,
            attributes: HashMap::new(),
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
    fn only_events_about_our_containers_or_wharf_itself_matter() {
        let settings = Settings {
            label_prefix: "wharf".into(),
            self_id: Some("me".into()),
            ..Settings::default()
        };
        let mut ours = listed(false, Health::None);
        ours.labels.insert("wharf.pool".into(), "web".into());
        let mut theirs = listed(false, Health::None);
        theirs.id = "other".into();
        theirs.labels.insert("traefik.enable".into(), "true".into());
        let known = candidates(&[ours, theirs], &settings);
        assert_eq!(known, HashSet::from(["c1".to_string()]));

        let mut start = ev("start", None);
        start.id = "new".into();
        assert!(!matters(&start, &known, &settings), "an unlabelled stranger");
        start.attributes.insert("wharf.enable".into(), "true".into());
        assert!(matters(&start, &known, &settings), "a new labelled container");
        let mut net = ev("disconnect", None);
        net.kind = EventKind::Network;
        assert!(matters(&net, &known, &settings), "a network event of a known container");
        net.id = "other".into();
        assert!(!matters(&net, &known, &settings));
        net.id = "me".into();
        assert!(matters(&net, &known, &settings), "wharf's own networks changed");
        let everyone = Settings {
            exposed_by_default: true,
            ..settings
        };
        net.id = "other".into();
        assert!(
            matters(&net, &known, &everyone),
            "with --exposed-by-default any container may join"
        );
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
}
