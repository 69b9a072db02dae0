//! When Docker says something happened to a container, on the daemon's
//! clock (Unix nanoseconds, the host's wall clock): its events (`docker
//! events`: kill, die, pause, …) and the end of the health probe that turned
//! it healthy. Compare them with [`super::unix_ns`] taken by the test, or
//! turn them into load offsets with `Report::offset_unix_ns`.
//!
//! The daemon keeps only its last 256 events: read them right after the
//! action, while they are still there.
//!
//! ```ignore
//! let since = unix_ns();
//! victim.kill("KILL");
//! let kill_ns = first_event_ns(&victim.id, "kill", since);
//! let sigterms: Vec<i128> = container_events(&b.id, "kill", since)
//!     .iter()
//!     .filter(|e| e.signal_is("TERM"))
//!     .map(|e| e.time_ns)
//!     .collect();
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

use super::docker::docker;
use super::unix_ns;

/// One `docker events` entry of a container.
#[derive(Debug, Clone)]
pub struct Event {
    /// `Action` (`kill`, `die`, `health_status: healthy`, …).
    pub action: String,
    /// `timeNano`: when the daemon logged it, Unix ns.
    pub time_ns: i128,
    /// `Actor.Attributes` (`name`, `image`, the labels, `signal` on kill, …).
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// Whether a `kill` event carried signal `name` (`"TERM"`), by name or
    /// number (the daemon logs `15` for `docker stop`, `SIGTERM` elsewhere).
    pub fn signal_is(&self, name: &str) -> bool {
        let number = match name {
            "TERM" => "15",
            "KILL" => "9",
            "INT" => "2",
            "HUP" => "1",
            _ => "",
        };
        self.attributes
            .get("signal")
            .is_some_and(|s| s == number || s.trim_start_matches("SIG") == name)
    }

    fn parse(line: &str) -> Result<Event, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("docker event is not JSON ({e}): {line}"))?;
        let time_ns = v["timeNano"]
            .as_i64()
            .ok_or_else(|| format!("docker event without timeNano: {line}"))?;
        let attributes = v["Actor"]["Attributes"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Event {
            action: v["Action"].as_str().unwrap_or_default().to_string(),
            time_ns: time_ns.into(),
            attributes,
        })
    }
}

/// A Unix time in nanoseconds as `docker events --since/--until` takes it (`<s>.<ns>`).
fn events_time(unix_ns: i128) -> String {
    format!("{}.{:09}", unix_ns / 1_000_000_000, unix_ns % 1_000_000_000)
}

/// The `action` events of container `id` (id or name) from `since_ns`
/// (Unix ns) until now, oldest first. `health_status` matches every
/// `health_status: …` action.
pub fn container_events(id: &str, action: &str, since_ns: i128) -> Vec<Event> {
    let container = format!("container={id}");
    let event = format!("event={action}");
    let out = docker(&[
        "events",
        "--since",
        &events_time(since_ns),
        "--until",
        &events_time(unix_ns()),
        "--filter",
        &container,
        "--filter",
        &event,
        "--format",
        "{{json .}}",
    ]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Event::parse(l).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// When the daemon logged the first `action` event of container `id` since
/// `since_ns` (Unix ns); panics, naming them, if there is none.
pub fn first_event_ns(id: &str, action: &str, since_ns: i128) -> i128 {
    let events = container_events(id, action, since_ns);
    events
        .first()
        .map(|e| e.time_ns)
        .unwrap_or_else(|| panic!("no {action} event for {id} since {since_ns} (Unix ns): {events:?}"))
}

/// `.State.Health.Status` of container `id`, and when (Unix ns) the probe
/// that made it healthy ended: the first passing probe after the last
/// failing one in Docker's health log. `None` while no probe has passed
/// since the last failure, or once the failures fell out of the log (it
/// keeps the last five).
pub fn health_passed_ns(id: &str) -> (String, Option<i128>) {
    let out = docker(&[
        "container",
        "inspect",
        "--format",
        "{{.State.Health.Status}}|{{range .State.Health.Log}}{{.ExitCode}}:{{.End.UnixNano}} {{end}}",
        id,
    ]);
    let (status, log) = out.split_once('|').unwrap_or((&out, ""));
    let entries: Vec<(i64, i128)> = log
        .split_whitespace()
        .filter_map(|e| {
            let (code, end) = e.split_once(':')?;
            Some((code.parse().ok()?, end.parse().ok()?))
        })
        .collect();
    let last_fail = entries.iter().rposition(|(code, _)| *code != 0);
    let first_pass = match last_fail {
        Some(i) => entries.get(i + 1).map(|e| e.1),
        None => None, // every kept entry passes: the transition fell out of the log
    };
    (status.to_string(), first_pass)
}
