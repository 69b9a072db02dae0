//! Backends that refuse connections: a container whose process listens a
//! moment after it starts (cold start without a health check, issue 10) and
//! a backend that refuses every connection (shown as such in `/api/state`).

mod support;

use support::*;

/// Start-to-listen delay of the demo in the cold-start test.
const LISTEN_DELAY: &str = "500ms";
/// Containers started one after the other, each alone in its pool.
const CYCLES: usize = 4;

/// A client sends steadily to a host from before its only container starts
/// until that container has answered for a while. Before wharf has seen the
/// container the answer is wharf's 404 `no-route`; after, every answer must
/// be the container's 200 — no 502 while its process is not listening yet.
#[tokio::test]
async fn a_container_that_listens_500ms_after_start_alone_in_its_pool_loses_no_request() {
    let net = Network::create("cold");
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    let (mut lost, mut routed_total, mut slowest) = (Vec::new(), 0usize, Duration::ZERO);
    for cycle in 0..CYCLES {
        let pool = unique("cold");
        let host = format!("{pool}.test");
        let load = Load::start(wharf.listen, &host, LoadOpts::gets(2, millis(10)));
        load.wait_more(5, secs(20), "requests before the container starts")
            .await;
        let c = demo(
            &net,
            "cold",
            &[&format!("wharf.pool={pool}"), &format!("wharf.host={host}")],
            &["-e", &format!("DEMO_LISTEN_DELAY={LISTEN_DELAY}")],
        );
        let (_, took) = poll("50 answers from the container", secs(30), || async {
            let p = load.progress();
            (p.ok >= 50)
                .then_some(())
                .ok_or(format!("{} ok of {}", p.ok, p.requests))
        })
        .await;
        let report = load.stop().await;
        let mut outcomes = report.outcomes.clone();
        outcomes.sort_by_key(|o| o.sent);
        let before = outcomes
            .iter()
            .take_while(|o| o.status == Some(404) && o.wharf_error.as_deref() == Some("no-route"))
            .count();
        let routed = &outcomes[before..];
        routed_total += routed.len();
        let first_wait = routed.iter().take(5).map(|o| o.latency()).max().unwrap_or_default();
        slowest = slowest.max(first_wait);
        println!(
            "cycle {cycle}: {before} answers before the route, {} after ({} not ok); \
             docker run → 50 ok in {took:?}; slowest of the first 5 routed: {first_wait:?}",
            routed.len(),
            routed.iter().filter(|o| !o.is_ok()).count(),
        );
        lost.extend(
            routed
                .iter()
                .filter(|o| !o.is_ok())
                .map(|o| format!("cycle {cycle}: {}", o.describe())),
        );
        drop(c);
    }
    println!(
        "{} of {routed_total} routed requests lost; slowest first answer {slowest:?}",
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "requests lost during cold starts:\n{}",
        lost.join("\n")
    );
}
