//! Targeted look-ups: asking the daemon about the few containers a burst of
//! events named, instead of re-listing the whole host (pure decisions).
//!
//! A `start` (or `restart`, a network `connect`/`disconnect`) of a container
//! that matters needs facts the event does not carry: its addresses. When
//! each of them cost a listing of every container on the host, a burst's
//! last container waited for one or two whole listings (all 200 of a burst
//! ready 631 ms after the last `docker run`, with 500 containers on a busy
//! daemon). The watcher now asks only for those containers (an `id` filter
//! on the same listing call) and merges the answer into its last listing.
//! Every other event is complete as a hint ([`super::hints`]): a stop
//! signal, an exit, a pause or a health change needs no look-up at all.
//! A full re-list still follows every burst and the minute's resync, so a
//! missed or misread event still heals.
//!
//! Answers can cross: a full listing that started before a look-up may land
//! after it, with older facts about the looked-up containers. Each call is
//! numbered when it starts; [`Looked`] keeps what each look-up found until a
//! full listing that started after it lands, and an older listing yields to it.

use std::collections::{HashMap, HashSet};

use super::containers::ContainerInfo;
use super::hints::{Event, EventKind};

/// Does this event (about a container that matters) need the container's
/// current facts from the daemon before the table can follow it?
pub fn needs_lookup(ev: &Event) -> bool {
    if ev.id.is_empty() {
        return false;
    }
    match ev.kind {
        EventKind::Container => matches!(ev.action.as_str(), "start" | "restart"),
        EventKind::Network => matches!(ev.action.as_str(), "connect" | "disconnect"),
        EventKind::Other => false,
    }
}

/// What recent look-ups found, until a newer full listing makes it old news.
#[derive(Debug, Default)]
pub struct Looked {
    /// Container id → (number of the look-up, what it found: `None` when
    /// the container is not running or not of interest).
    found: HashMap<String, (u64, Option<ContainerInfo>)>,
}

impl Looked {
    /// Merge the answer of look-up number `seq`, asked about `ids`, into
    /// `containers` (the last listing): an answered container replaces or
    /// joins its entry; an id the daemon did not answer for is no longer
    /// running and leaves. `answer` holds only containers worth keeping.
    pub fn apply_lookup(
        &mut self,
        seq: u64,
        ids: &HashSet<String>,
        answer: Vec<ContainerInfo>,
        containers: &mut Vec<ContainerInfo>,
    ) {
        let mut answer: HashMap<String, ContainerInfo> = answer
            .into_iter()
            .filter(|c| ids.contains(&c.id))
            .map(|c| (c.id.clone(), c))
            .collect();
        for id in ids {
            let info = answer.remove(id);
            upsert(containers, id, info.clone());
            self.found.insert(id.clone(), (seq, info));
        }
    }

    /// A full listing that started as call number `seq` landed: what a later
    /// look-up found wins over it; what earlier ones found is forgotten.
    pub fn apply_listing(&mut self, seq: u64, list: &mut Vec<ContainerInfo>) {
        self.found.retain(|_, (s, _)| *s > seq);
        for (id, (_, info)) in &self.found {
            upsert(list, id, info.clone());
        }
    }

    /// Nothing remembered (a reconnect starts from a fresh listing).
    pub fn clear(&mut self) {
        self.found.clear();
    }
}

fn upsert(list: &mut Vec<ContainerInfo>, id: &str, info: Option<ContainerInfo>) {
    match (list.iter().position(|c| c.id == id), info) {
        (Some(i), Some(c)) => list[i] = c,
        (Some(i), None) => {
            list.swap_remove(i);
        }
        (None, Some(c)) => list.push(c),
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::docker::containers::Health;

    fn c(id: &str, ip: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: id.into(),
            labels: HashMap::new(),
            networks: [("net".to_string(), ip.parse().ok())].into(),
            exposed_ports: vec![],
            created: 0,
            paused: false,
            health: Health::None,
        }
    }

    fn ids(v: &[ContainerInfo]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|c| format!("{}@{:?}", c.id, c.networks["net"])).collect();
        v.sort();
        v
    }

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn ev(kind: EventKind, action: &str) -> Event {
        Event {
            kind,
            action: action.into(),
            id: "c1".into(),
            name: String::new(),
            signal: None,
            time_nano: None,
            attributes: HashMap::new(),
        }
    }

    #[test]
    fn only_starts_and_network_changes_need_a_lookup_the_rest_are_complete_hints() {
        for a in ["start", "restart"] {
            assert!(needs_lookup(&ev(EventKind::Container, a)), "{a}");
        }
        for a in ["connect", "disconnect"] {
            assert!(needs_lookup(&ev(EventKind::Network, a)), "{a}");
        }
        for a in [
            "kill",
            "die",
            "stop",
            "destroy",
            "pause",
            "unpause",
            "health_status: healthy",
        ] {
            assert!(!needs_lookup(&ev(EventKind::Container, a)), "{a}");
        }
        let mut nameless = ev(EventKind::Network, "connect");
        nameless.id.clear();
        assert!(!needs_lookup(&nameless), "a network event without a container");
    }

    #[test]
    fn a_lookup_adds_replaces_and_removes_only_the_containers_it_asked_about() {
        let mut listed = vec![c("a", "10.0.0.1"), c("b", "10.0.0.2"), c("gone", "10.0.0.3")];
        let mut looked = Looked::default();
        let answer = vec![c("b", "10.0.0.9"), c("new", "10.0.0.4"), c("a", "10.9.9.9")];
        looked.apply_lookup(1, &set(&["b", "new", "gone"]), answer, &mut listed);
        assert_eq!(
            ids(&listed),
            ["a@Some(10.0.0.1)", "b@Some(10.0.0.9)", "new@Some(10.0.0.4)"],
            "a was not asked about: its entry stays as listed"
        );
    }

    #[test]
    fn an_older_full_listing_landing_after_a_lookup_does_not_undo_it() {
        let mut looked = Looked::default();
        let mut containers = vec![c("a", "10.0.0.1")];
        // Call 1: a full listing starts. Call 2: a look-up of a container
        // that just started, answered first.
        looked.apply_lookup(2, &set(&["new"]), vec![c("new", "10.0.0.4")], &mut containers);
        let mut older = vec![c("a", "10.0.0.1")];
        looked.apply_listing(1, &mut older);
        assert_eq!(ids(&older), ["a@Some(10.0.0.1)", "new@Some(10.0.0.4)"]);
        // A listing that started after the look-up is the newer truth.
        let mut newer = vec![c("a", "10.0.0.1")];
        looked.apply_listing(3, &mut newer);
        assert_eq!(ids(&newer), ["a@Some(10.0.0.1)"], "new stopped since: the listing wins");
        let mut later = vec![c("a", "10.0.0.1")];
        looked.apply_listing(1, &mut later);
        assert_eq!(ids(&later), ["a@Some(10.0.0.1)"], "the look-up was forgotten");
    }

    #[test]
    fn a_lookup_that_found_a_container_stopped_wins_over_an_older_listing_that_shows_it() {
        let mut looked = Looked::default();
        let mut containers = vec![c("a", "10.0.0.1")];
        looked.apply_lookup(2, &set(&["a"]), vec![], &mut containers);
        assert!(containers.is_empty());
        let mut older = vec![c("a", "10.0.0.1")];
        looked.apply_listing(1, &mut older);
        assert!(older.is_empty(), "{older:?}");
    }
}
