//! Small text helpers shared by flags and labels: durations, booleans,
//! "did you mean" suggestions and picking a name out of a fixed list.
//!
//! Pure and dependency-free, so that `config` and `labels` can share them
//! without either importing the other.

use std::time::Duration;

/// The entry of `all` named `s` (case-insensitive), else an error listing the names.
pub fn pick<T: Copy>(what: &str, all: &[T], name: fn(T) -> &'static str, s: &str) -> Result<T, String> {
    let s = s.trim();
    if let Some(&found) = all.iter().find(|&&t| name(t).eq_ignore_ascii_case(s)) {
        return Ok(found);
    }
    let names: Vec<&str> = all.iter().map(|&t| name(t)).collect();
    let hint = did_you_mean(s, &names).map(|m| format!(" (did you mean {m}?)"));
    let (hint, names) = (hint.unwrap_or_default(), names.join(", "));
    Err(format!("unknown {what} {s:?}{hint}; one of {names}"))
}

/// Parses `250ms`, `5s`, `2m`, `1h`, `1.5s`, `1m30s`, `0`. Errors do not repeat the input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXAMPLES: &str = "like 5s, 250ms, 1.5m or 1h";
    let s = s.trim();
    match s {
        "" => return Err(format!("empty duration; {EXAMPLES}")),
        "0" => return Ok(Duration::ZERO),
        _ if s.starts_with('-') => return Err("a duration cannot be negative".into()),
        _ => {}
    }
    let (mut rest, mut total) = (s, Duration::ZERO);
    while !rest.is_empty() {
        let is_num = |c: char| c.is_ascii_digit() || c == '.';
        let (num, tail) = rest.split_at(rest.find(|c| !is_num(c)).unwrap_or(rest.len()));
        let (unit, tail) = tail.split_at(tail.find(is_num).unwrap_or(tail.len()));
        rest = tail;
        let n: f64 = match num.parse() {
            Ok(n) => n,
            Err(_) if num.is_empty() => return Err(format!("expected a number, {EXAMPLES}")),
            Err(_) => return Err(format!("{num:?} is not a number")),
        };
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "" => return Err(format!("missing unit after {num}: ms, s, m or h")),
            _ => return Err(format!("unknown unit {unit:?}: use ms, s, m or h")),
        };
        let part = Duration::try_from_secs_f64(secs).ok();
        let sum = part.and_then(|p| total.checked_add(p));
        total = sum.ok_or("duration is too large")?;
    }
    Ok(total)
}

/// The candidate closest to `input` (case-insensitive): edit distance ≤ 2 (a swap of two
/// neighbours counts 1), else one containing the other (3+ characters). Ties: first candidate.
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let input = input.to_ascii_lowercase();
    if input.is_empty() {
        return None;
    }
    let score = |candidate: &str| {
        let candidate = candidate.to_ascii_lowercase();
        let (short, long) = if input.len() <= candidate.len() {
            (&input, &candidate)
        } else {
            (&candidate, &input)
        };
        match edit_distance(&input, &candidate) {
            d if d <= 2 => Some(d),
            _ if short.len() >= 3 && long.contains(short.as_str()) => Some(3),
            _ => None,
        }
    };
    let scored = candidates.iter().filter_map(|&c| score(c).map(|s| (s, c)));
    scored.min_by_key(|&(s, _)| s).map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d: Vec<Vec<usize>> = (0..=a.len()).map(|i| vec![i; b.len() + 1]).collect();
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// `true/false/1/0/yes/no/on/off`, case-insensitive, surrounding spaces ignored.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `s` cut to at most `max` characters, with how much was left out: for
/// echoing values from untrusted sources (labels) in logs and the state.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => format!("{}… ({} bytes in all)", &s[..end], s.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_fractions_and_combinations() {
        let cases = [
            ("0", 0),
            ("0s", 0),
            ("250ms", 250),
            ("5s", 5000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1.5s", 1500),
            (".5s", 500),
            ("1.1s", 1100),
            ("1m30s", 90_000),
            (" 1h1m1s1ms ", 3_661_001),
        ];
        for (input, ms) in cases {
            assert_eq!(parse_duration(input), Ok(Duration::from_millis(ms)), "{input}");
        }
    }

    #[test]
    fn durations_reject_malformed_input_with_a_clear_message() {
        let cases = [
            ("", "empty duration; like 5s, 250ms, 1.5m or 1h"),
            ("5", "missing unit after 5: ms, s, m or h"),
            ("5x", "unknown unit \"x\": use ms, s, m or h"),
            ("5 s", "unknown unit \" s\": use ms, s, m or h"),
            ("-5s", "a duration cannot be negative"),
            ("s", "expected a number, like 5s, 250ms, 1.5m or 1h"),
            ("1.2.3s", "\"1.2.3\" is not a number"),
            ("1e9s", "unknown unit \"e\": use ms, s, m or h"),
            ("99999999999999999999999h", "duration is too large"),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input), Err(expected.to_string()), "{input:?}");
        }
    }

    #[test]
    fn did_you_mean_picks_the_closest_candidate_within_two_edits_or_by_substring() {
        let names = ["port", "protocol", "pool", "health.path"];
        let cases = [
            ("prot", Some("port")),
            ("protocl", Some("protocol")),
            ("POOL", Some("pool")),
            ("health", Some("health.path")),
            ("weight", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(did_you_mean(input, &names), expected, "{input}");
        }
        assert_eq!(did_you_mean("x", &[]), None);
    }

    #[test]
    fn parse_bool_accepts_common_spellings_in_any_case() {
        for (inputs, expected) in [("true TRUE 1 yes On", Some(true)), ("false 0 No OFF", Some(false))] {
            for input in inputs.split(' ') {
                assert_eq!(parse_bool(input), expected, "{input}");
            }
        }
        assert_eq!(parse_bool(" on "), Some(true));
        for input in ["", "y", "2", "enabled"] {
            assert_eq!(parse_bool(input), None, "{input}");
        }
    }

    #[test]
    fn clip_keeps_short_values_and_cuts_long_ones_on_a_char_boundary() {
        assert_eq!(clip("web.test", 80), "web.test");
        let long = "é".repeat(30_000);
        let c = clip(&long, 80);
        assert!(c.starts_with(&"é".repeat(80)));
        assert!(c.ends_with("… (60000 bytes in all)"), "{c}");
        assert!(c.len() < 200);
    }
}
