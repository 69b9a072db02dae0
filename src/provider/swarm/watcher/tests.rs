//! The poll loop under paused time with a scripted [`Source`]: what the
//! filtered listing shows, what a single-task lookup says of a task that
//! left it, and what is published when.

use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::FutureExt;

use super::*;
use crate::provider::Discovery;
use crate::routing::Router;

#[derive(Default)]
struct Script {
    /// Every task Swarm knows (the listing filters on desired `running`).
    tasks: Vec<TaskInfo>,
    polls: usize,
    lookups: usize,
    fail: bool,
    events: Option<mpsc::UnboundedSender<Result<SwarmEvent, String>>>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Script>>);

impl Fake {
    fn with<R>(&self, f: impl FnOnce(&mut Script) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
    fn set(&self, id: &str, desired: &str, state: &str) {
        self.with(|s| {
            let t = s.tasks.iter_mut().find(|t| t.id == id).expect("task");
            t.desired = desired.into();
            t.state = state.into();
        });
    }
    fn send(&self, ev: SwarmEvent) {
        self.with(|s| s.events.as_ref().expect("subscribed").unbounded_send(Ok(ev)).unwrap());
    }
}

impl Source for Fake {
    fn tasks(&self) -> BoxFuture<'static, Result<Vec<TaskInfo>, String>> {
        let r = self.with(|s| {
            s.polls += 1;
            let live = s.tasks.iter().filter(|t| t.desired == "running").cloned().collect();
            if s.fail {
                Err("manager gone".to_string())
            } else {
                Ok(live)
            }
        });
        async move { r }.boxed()
    }
    fn task(&self, id: String) -> BoxFuture<'static, Result<Option<TaskInfo>, String>> {
        let r = self.with(|s| {
            s.lookups += 1;
            s.tasks.iter().find(|t| t.id == id).cloned()
        });
        async move { Ok(r) }.boxed()
    }
    fn services(&self) -> BoxFuture<'static, Result<HashMap<String, ServiceInfo>, String>> {
        let svc = ServiceInfo {
            id: "svc".into(),
            name: "web".into(),
            labels: [("wharf.enable".to_string(), "true".to_string())].into(),
            ports: vec![],
        };
        async move { Ok([("svc".to_string(), svc)].into()) }.boxed()
    }
    fn events(&self, _since: i64) -> BoxStream<'static, Result<SwarmEvent, String>> {
        let (tx, rx) = mpsc::unbounded();
        self.with(|s| s.events = Some(tx));
        rx.boxed()
    }
}

fn task(id: &str, n: u8) -> TaskInfo {
    TaskInfo {
        id: id.into(),
        service_id: "svc".into(),
        slot: Some(n as u64),
        node_id: "node".into(),
        desired: "running".into(),
        state: "running".into(),
        created: n as i64,
        labels: HashMap::new(),
        networks: [("front".to_string(), Some(format!("10.0.1.{n}").parse().unwrap()))].into(),
    }
}

struct Running {
    fake: Fake,
    router: Arc<Router>,
    discovery: Arc<Discovery>,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(tasks: Vec<TaskInfo>) -> Running {
        let fake = Fake::default();
        fake.with(|s| s.tasks = tasks);
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
            handle: tokio::spawn(w.run()),
        }
    }

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
        self.handle.abort();
    }
}

async fn step(d: Duration) {
    sleep(d).await;
    tokio::task::yield_now().await;
}

#[tokio::test(start_paused = true)]
async fn a_task_swarm_stops_drains_at_the_next_poll_and_leaves_when_it_stopped() {
    let r = Running::start(vec![task("a", 1), task("b", 2)]);
    step(Duration::from_millis(10)).await;
    assert_eq!(r.states(), ["a=ready", "b=ready"]);

    r.fake.set("b", "remove", "running");
    step(POLL).await;
    assert_eq!(r.states(), ["a=ready", "b=draining"]);

    r.fake.set("b", "remove", "shutdown");
    step(FAST_POLL * 2).await;
    assert_eq!(r.states(), ["a=ready"]);
    let lookups = r.fake.with(|s| s.lookups);
    step(POLL * 3).await;
    assert_eq!(
        r.fake.with(|s| s.lookups),
        lookups,
        "a stopped task is not looked up again"
    );
}

#[tokio::test(start_paused = true)]
async fn polls_every_second_when_idle_and_fast_while_a_task_starts() {
    let r = Running::start(vec![task("a", 1)]);
    // The first poll is a change (nothing → one task): fast polls for a while.
    step(FAST_FOR + POLL).await;
    let before = r.fake.with(|s| s.polls);
    step(POLL * 5).await;
    let idle = r.fake.with(|s| s.polls) - before;
    assert!((4..=6).contains(&idle), "{idle} polls in 5 s idle");

    let mut new = task("c", 3);
    new.state = "starting".into();
    r.fake.with(|s| s.tasks.push(new));
    step(POLL).await;
    assert_eq!(r.states(), ["a=ready", "c=unhealthy"]);
    r.fake.set("c", "running", "running");
    step(FAST_POLL * 2).await;
    assert_eq!(r.states(), ["a=ready", "c=ready"], "a starting task is polled fast");

    // A task that stays pending (no node fits it) is polled fast only a while.
    let mut stuck = task("d", 4);
    stuck.state = "pending".into();
    r.fake.with(|s| s.tasks.push(stuck));
    step(FAST_FOR + POLL * 2).await;
    let before = r.fake.with(|s| s.polls);
    step(POLL * 5).await;
    let idle = r.fake.with(|s| s.polls) - before;
    assert!((4..=6).contains(&idle), "{idle} polls in 5 s with a task stuck pending");
}

#[tokio::test(start_paused = true)]
async fn a_stop_signal_on_this_node_drains_before_the_next_poll() {
    let r = Running::start(vec![task("a", 1), task("b", 2)]);
    step(Duration::from_millis(10)).await;
    r.fake.send(SwarmEvent::TaskContainer {
        action: "kill".into(),
        task_id: "b".into(),
        signal: Some("15".into()),
    });
    step(Duration::from_millis(1)).await;
    assert_eq!(r.states(), ["a=ready", "b=draining"]);
}

#[tokio::test(start_paused = true)]
async fn healthcheck_probes_of_task_containers_do_not_quicken_the_poll() {
    let r = Running::start(vec![task("a", 1)]);
    step(FAST_FOR + POLL).await;
    let before = r.fake.with(|s| s.polls);
    for _ in 0..10 {
        for action in [
            "exec_create: /wharf healthcheck",
            "exec_start: /wharf healthcheck",
            "exec_die",
        ] {
            r.fake.send(SwarmEvent::TaskContainer {
                action: action.into(),
                task_id: "a".into(),
                signal: None,
            });
        }
        step(Duration::from_millis(500)).await;
    }
    let polls = r.fake.with(|s| s.polls) - before;
    assert!((4..=6).contains(&polls), "{polls} polls in 5 s of probes");
}

#[tokio::test(start_paused = true)]
async fn a_service_event_polls_at_once() {
    let r = Running::start(vec![task("a", 1)]);
    step(Duration::from_millis(10)).await;
    r.fake.with(|s| s.tasks.push(task("b", 2)));
    r.fake.send(SwarmEvent::Service {
        action: "update".into(),
        name: "web".into(),
    });
    step(Duration::from_millis(20)).await;
    assert_eq!(r.states(), ["a=ready", "b=ready"]);
}

#[tokio::test(start_paused = true)]
async fn losing_the_api_keeps_the_last_pools_and_says_so() {
    let r = Running::start(vec![task("a", 1)]);
    step(Duration::from_millis(10)).await;
    r.fake.with(|s| s.fail = true);
    step(POLL * 2).await;
    assert_eq!(r.states(), ["a=ready"]);
    let st = r.discovery.snapshot();
    assert!(
        !st.connected && st.last_error.as_deref() == Some("manager gone"),
        "{st:?}"
    );
    r.fake.with(|s| s.fail = false);
    step(Duration::from_secs(6)).await;
    assert!(r.discovery.snapshot().connected);
}
