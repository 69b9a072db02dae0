//! A real browser for the dashboard tests: Debian's headless Chromium.

use std::process::Command;

use super::docker::unique;

/// Debian's chromium, installed if absent (as `.ci/run` does).
pub fn chromium() -> String {
    for bin in ["chromium", "chromium-browser"] {
        if Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return bin.to_string();
        }
    }
    eprintln!("installing chromium (Debian package)");
    let ok = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "chromium is needed for the dashboard test and could not be installed"
    );
    "chromium".to_string()
}

/// Run headless Chromium on `url` at `size` with `extra` arguments; the
/// page's scripts get `budget_ms` of virtual time (its 1 s refreshes run).
pub fn headless(bin: &str, url: &str, size: &str, budget_ms: u32, extra: &[&str]) -> String {
    let profile = std::env::temp_dir().join(unique("chromium-profile"));
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--window-size={size}"),
            &format!("--virtual-time-budget={budget_ms}"),
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
