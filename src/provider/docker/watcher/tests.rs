//! The loop under paused time, with a scripted [`Source`]: what is listed
//! when, what is published between listings, and how a lost connection is
//! handled. Time only moves when the test sleeps.

use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::FutureExt;

use super::*;
use crate::model::BackendStatus;
use crate::provider::docker::containers::Health;
use crate::provider::Discovery;
use crate::routing::Router;

#[derive(Default)]
struct Script {
    containers: Vec<ContainerInfo>,
    /// Listings started so far.
    lists: usize,
    /// Look-ups started so far (answered at once).
    looks: usize,
    list_delay: Duration,
    fail_lists: bool,
    subscriptions: usize,
    events: Option<mpsc::UnboundedSender<Result<Event, String>>>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Script>>);

impl Fake {
    fn with<R>(&self, f: impl FnOnce(&mut Script) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }

    fn send(&self, ev: Event) {
        self.with(|s| s.events.as_ref().expect("subscribed").unbounded_send(Ok(ev)).unwrap());
    }

    fn lists(&self) -> usize {
        self.with(|s| s.lists)
    }

    fn looks(&self) -> usize {
        self.with(|s| s.looks)
    }
}

impl Source for Fake {
    fn list(&self) -> BoxFuture<'static, Result<Vec<ContainerInfo>, String>> {
        let (delay, fail, snapshot) = self.with(|s| {
            s.lists += 1;
            (s.list_delay, s.fail_lists, s.containers.clone())
        });
        // Like the daemon: the listing reflects the moment it was asked for.
        async move {
            sleep(delay).await;
            if fail {
                Err("daemon gone".to_string())
            } else {
                Ok(snapshot)
            }
        }
        .boxed()
    }

    fn look(&self, ids: Vec<String>) -> BoxFuture<'static, Result<Vec<ContainerInfo>, String>> {
        let (fail, found) = self.with(|s| {
            s.looks += 1;
            let found = s.containers.iter().filter(|c| ids.contains(&c.id)).cloned().collect();
            (s.fail_lists, found)
        });
        async move {
            if fail {
                Err("daemon gone".to_string())
            } else {
                Ok(found)
            }
        }
        .boxed()
    }

    fn events(&self, _since: i64) -> BoxStream<'static, Result<Event, String>> {
        let (tx, rx) = mpsc::unbounded();
        self.with(|s| {
            s.subscriptions += 1;
            s.events = Some(tx);
        });
        rx.boxed()
    }
}

fn container(id: &str, ip: &str) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        name: id.into(),
        labels: [("wharf.pool".to_string(), "web".to_string())].into(),
        networks: [("net".to_string(), ip.parse().ok())].into(),
        exposed_ports: vec![80],
        created: 0,
        paused: false,
        health: Health::None,
    }
}

fn event(action: &str, id: &str) -> Event {
    Event {
        kind: super::super::hints::EventKind::Container,
        action: action.into(),
        id: id.into(),
        name: id.into(),
        signal: (action == "kill").then(|| "15".to_string()),
        time_nano: None,
        // Container events carry the container's labels.
        attributes: [("wharf.pool".to_string(), "web".to_string())].into(),
    }
}

/// An event about a container that is none of wharf's business.
fn stranger(action: &str, id: &str) -> Event {
    Event {
        attributes: [("com.example.app".to_string(), "x".to_string())].into(),
        ..event(action, id)
    }
}

struct Running {
    fake: Fake,
    router: Arc<Router>,
    discovery: Arc<Discovery>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(containers: Vec<ContainerInfo>) -> Running {
        let fake = Fake::default();
        fake.with(|s| s.containers = containers);
        let router = Arc::new(Router::default());
        let discovery = Arc::new(Discovery::default());
        let out = Publisher::new(Arc::clone(&router), vec![], Arc::clone(&discovery));
        let settings = Settings {
            label_prefix: "wharf".into(),
            ..Settings::default()
        };
        let w = Watcher {
            source: fake.clone(),
            settings,
            out,
        };
        Running {
            fake,
            router,
            discovery,
            task: tokio::spawn(w.run()),
        }
    }

    /// The backends of pool `web` that take requests now.
    fn ready(&self) -> Vec<String> {
        let t = self.router.load();
        t.pools
            .iter()
            .flat_map(|p| p.backends.iter())
            .filter(|b| b.is_ready())
            .map(|b| b.key.id.clone())
            .collect()
    }

    /// `id=state` of every backend of pool `web`.
    fn states(&self) -> Vec<String> {
        let t = self.router.load();
        let Some(p) = t.desired.pools.get("web") else {
            return vec![];
        };
        p.backends
            .iter()
            .map(|b| format!("{}={}", b.id, b.status.as_str()))
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn after(ms: u64) {
    sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_starts_costs_one_lookup_of_those_containers_then_one_full_relist_then_the_minute_resync() {
    let w = Running::start(vec![container("c1", "10.0.0.1")]);
    after(1).await;
    assert_eq!((w.fake.lists(), w.states()), (1, vec!["c1=ready".to_string()]));
    assert!(w.discovery.is_ready());

    w.fake.with(|s| {
        s.containers.push(container("c2", "10.0.0.2"));
        s.containers.push(container("c3", "10.0.0.3"));
    });
    for _ in 0..10 {
        w.fake.send(event("start", "c2"));
        w.fake.send(event("start", "c3"));
    }
    after(2).await;
    assert_eq!(w.fake.looks(), 0, "still gathering the burst");
    after(2).await;
    assert_eq!(
        (w.fake.looks(), w.fake.lists()),
        (1, 1),
        "one look-up for twenty events, no listing of the host"
    );
    assert_eq!(w.states(), ["c1=ready", "c2=ready", "c3=ready"]);
    assert_eq!(w.discovery.snapshot().lookups, 1);
    after(240).await;
    assert_eq!(w.fake.lists(), 1);
    after(20).await;
    assert_eq!(w.fake.lists(), 2, "the full re-list, 250 ms after the burst");
    after(59_000).await;
    assert_eq!(w.fake.lists(), 2);
    after(2_000).await;
    assert_eq!(w.fake.lists(), 3, "the periodic resync");
    assert_eq!(w.fake.looks(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_start_during_a_slow_full_listing_is_routed_by_a_lookup_and_the_older_listing_does_not_undo_it() {
    let w = Running::start(vec![container("c1", "10.0.0.1")]);
    after(1).await;
    w.fake.with(|s| s.list_delay = Duration::from_secs(10));
    w.fake.send(event("pause", "c1"));
    after(300).await;
    assert_eq!(w.fake.lists(), 2, "a 10 s re-list is in flight");

    w.fake.with(|s| s.containers.push(container("c2", "10.0.0.2")));
    w.fake.send(event("start", "c2"));
    after(5).await;
    assert_eq!(
        w.states(),
        ["c1=unhealthy", "c2=ready"],
        "routed without waiting for the listing"
    );
    // The listing in flight was asked for before c2 started: it lands
    // without c2, and must not take it out.
    after(10_000).await;
    assert_eq!(w.fake.lists(), 2);
    assert_eq!(w.states(), ["c1=unhealthy", "c2=ready"]);
}

#[tokio::test(start_paused = true)]
async fn events_about_other_containers_cost_no_listing() {
    let w = Running::start(vec![container("c1", "10.0.0.1")]);
    after(1).await;
    for i in 0..500 {
        w.fake.send(stranger("start", &format!("x{i}")));
        w.fake.send(stranger("die", &format!("x{i}")));
    }
    after(300).await;
    assert_eq!(w.fake.lists(), 1, "1,000 unrelated events, no re-list");
    assert_eq!(w.discovery.snapshot().events, 1_000, "but counted");
    w.fake.send(stranger("kill", "c1")); // a known container, whatever its event says
    after(3).await;
    assert_eq!(w.states(), ["c1=draining"]);
    after(300).await;
    assert_eq!(w.fake.lists(), 2, "the re-list after a burst that mattered");
    assert_eq!(
        w.fake.looks(),
        0,
        "a stop signal is a complete hint: nothing to look up"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_signal_drains_at_once_even_while_a_slow_relist_is_in_flight() {
    let w = Running::start(vec![container("c1", "10.0.0.1"), container("c2", "10.0.0.2")]);
    after(1).await;
    w.fake.with(|s| s.list_delay = Duration::from_secs(10));
    w.fake.send(event("start", "c3"));
    after(300).await;
    assert_eq!(w.fake.lists(), 2, "a 10 s re-list is in flight");

    w.fake.send(event("kill", "c1"));
    tokio::task::yield_now().await;
    assert_eq!(w.ready(), ["c2"], "out of rotation on the spot");
    after(3).await;
    assert_eq!(
        w.states(),
        ["c1=draining", "c2=ready"],
        "published without waiting for the listing"
    );
    w.fake.send(event("die", "c1"));
    after(3).await;
    assert_eq!(w.states(), ["c2=ready"]);

    // The listing in flight predates those events: once it lands, the
    // watcher lists again rather than trust it.
    after(10_000).await;
    assert_eq!(w.states(), ["c2=ready"], "a stale listing does not resurrect c1");
    after(300).await;
    assert_eq!(
        w.fake.lists(),
        3,
        "one more listing after events that arrived during one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_events_stream_keeps_the_pools_then_resubscribes_and_relists() {
    let w = Running::start(vec![container("c1", "10.0.0.1")]);
    after(1).await;
    w.fake.with(|s| s.events = None); // the daemon hangs up
    after(1).await;
    let status = w.discovery.snapshot();
    assert!(!status.connected && status.reconnects == 1, "{status:?}");
    assert_eq!(w.states(), ["c1=ready"], "the last known pools keep serving");
    after(100).await; // back-off: at most 100 ms after the first failure
    assert_eq!(w.fake.with(|s| (s.subscriptions, s.lists)), (2, 2));
    assert!(w.discovery.snapshot().connected);
}

#[tokio::test(start_paused = true)]
async fn a_failing_listing_keeps_the_pools_and_backs_off_exponentially() {
    let w = Running::start(vec![container("c1", "10.0.0.1")]);
    after(1).await;
    w.fake.with(|s| s.fail_lists = true);
    w.fake.send(event("start", "c2"));
    after(10).await;
    assert_eq!((w.fake.looks(), w.fake.lists()), (1, 1), "the look-up failed");
    assert_eq!(w.states(), ["c1=ready"]);
    // Failures 1, 2, 3 wait up to 100, 200, 400 ms before reconnecting.
    after(100 + 200 + 400).await;
    let (subs, lists) = w.fake.with(|s| (s.subscriptions, s.lists));
    assert_eq!(
        (subs, lists),
        (4, 4),
        "three more attempts, each a subscription and a listing"
    );
    assert_eq!(w.states(), ["c1=ready"], "still serving the last known pools");
    w.fake.with(|s| s.fail_lists = false);
    after(1_000).await;
    assert!(w.discovery.snapshot().connected);
}

#[test]
fn backoff_grows_to_a_cap_with_jitter() {
    assert_eq!(backoff(1, 1.0), Duration::from_millis(100));
    assert_eq!(backoff(3, 1.0), Duration::from_millis(400));
    assert_eq!(backoff(30, 1.0), Duration::from_secs(5));
    assert_eq!(backoff(1, 0.5), Duration::from_millis(50));
}

#[test]
fn drain_status_is_what_routing_sees() {
    assert_eq!(BackendStatus::Draining.as_str(), "draining");
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_stop_signals_is_applied_together_in_one_table_swap_during_a_slow_relist() {
    let many: Vec<ContainerInfo> = (0..100)
        .map(|i| container(&format!("c{i}"), &format!("10.0.1.{i}")))
        .collect();
    let w = Running::start(many);
    after(1).await;
    assert_eq!(w.states().len(), 100);
    // A listing that takes 5 s is in flight when the kills arrive.
    w.fake.with(|s| s.list_delay = Duration::from_secs(5));
    w.fake.send(event("start", "c0"));
    after(300).await;
    assert_eq!(w.fake.lists(), 2, "a slow re-list started");
    let swaps = w.router.subscribe();
    let before = *swaps.borrow();
    for i in 0..100 {
        w.fake.send(event("kill", &format!("c{i}")));
        w.fake.send(event("die", &format!("c{i}")));
    }
    after(3).await;
    assert!(w.states().is_empty(), "every killed backend is gone: {:?}", w.states());
    assert_eq!(
        *swaps.borrow() - before,
        1,
        "200 events waiting in the stream: applied together, one table swap"
    );
    assert_eq!(w.fake.lists(), 2, "still the same listing in flight");
}

#[tokio::test(start_paused = true)]
async fn stop_signals_handed_over_one_by_one_leave_rotation_each_at_once_and_cost_one_table_for_the_burst() {
    let many: Vec<ContainerInfo> = (0..50)
        .map(|i| container(&format!("c{i}"), &format!("10.0.2.{i}")))
        .collect();
    let w = Running::start(many);
    after(1).await;
    let swaps = w.router.subscribe();
    let before = *swaps.borrow();
    // The daemon's stream hands events over one at a time: the watcher
    // sees each alone, never the whole burst waiting.
    for i in 0..50 {
        w.fake.send(event("kill", &format!("c{i}")));
        tokio::task::yield_now().await;
        assert_eq!(w.ready().len(), 49 - i, "kill {i} out of rotation on the spot");
    }
    assert_eq!(*swaps.borrow() - before, 0, "no table built per event");
    after(3).await;
    assert_eq!(*swaps.borrow() - before, 1, "one table for the burst");
    assert!(w.states().iter().all(|s| s.ends_with("=draining")), "{:?}", w.states());
    assert_eq!(w.fake.looks(), 0);
}
