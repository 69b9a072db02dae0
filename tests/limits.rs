//! The descriptor limit wharf runs with: the soft limit it inherits is
//! raised to the hard limit at start (and logged), and the automatic
//! `--max-connections` follows the raised limit, not the inherited one.
//! (A limit already at its maximum, 256:256, is `tests/hostile.rs`'s
//! `healthz_answers_while_a_flood_of_connections_meets_a_256_descriptor_limit`.)

mod support;

use support::*;

/// `Max open files` (soft, hard) from `/proc/<pid>/limits`.
fn open_files(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read /proc/<pid>/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no Max open files in:\n{limits}"));
    let nums: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (nums[0], nums[1])
}

#[tokio::test]
async fn soft_descriptor_limit_256_is_raised_to_the_hard_limit_4096_at_start() {
    let backend = format!("web=127.0.0.1:{}", free_port());
    let wharf = Wharf::start_in(
        &["prlimit", "--nofile=256:4096", "--"],
        &["--provider", "none", "--static", &backend, "--workers", "1"],
        &[],
    )
    .wait_ready(secs(30))
    .await;
    let (soft, hard) = open_files(wharf.pid());
    println!("wharf runs with Max open files {soft} (soft) / {hard} (hard)");
    assert_eq!((soft, hard), (4096, 4096), "soft limit not raised to the hard one");
    let log = wharf.log();
    let raised = log
        .lines()
        .find(|l| l.contains("raised the file descriptor limit"))
        .unwrap_or_else(|| panic!("the raise is not logged:\n{log}"));
    assert!(
        raised.contains("before=256") && raised.contains("after=4096"),
        "{raised}"
    );
    assert!(
        log.contains("max_connections=2016"),
        "auto --max-connections from the raised limit: (4096 - 64) / 2 = 2016:\n{log}"
    );
}
