//! `wharf.auth.basic`: HTTP Basic authentication (RFC 7617) against bcrypt
//! or argon2 hashes.
//!
//! A hash is slow on purpose (tens of milliseconds), so verification must
//! not let a brute force burn wharf's CPU or stall other pools:
//! - an `Authorization` value seen before is answered from a cache keyed by
//!   a keyed hash of the value (right *and* wrong ones), so a client
//!   repeating its header costs one hash lookup;
//! - verifications run on the blocking pool, never on a worker's thread, at
//!   most [`MAX_VERIFYING`] at a time in the whole process, with at most
//!   [`MAX_WAITING`] more queued for at most [`MAX_WAIT`]; beyond that the
//!   request is refused (429, `x-wharf-error: auth-busy`) without hashing.
//!
//! So a flood of wrong passwords costs at most one core's worth of hashing,
//! and requests of other pools, and cached logins, never wait for it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderValue;
use tokio::sync::Semaphore;

use crate::model::BasicAuth;

/// Hash verifications running at once, process-wide.
pub const MAX_VERIFYING: usize = 1;
/// Requests waiting for a verification slot, process-wide, before refusing.
pub const MAX_WAITING: usize = 32;
/// Longest wait for a verification slot before refusing (so a queue behind
/// slow hashes never holds a client longer than this).
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// Cached `Authorization` values per pool; the cache starts over when full.
const MAX_CACHED: usize = 4096;

static VERIFYING: Semaphore = Semaphore::const_new(MAX_VERIFYING);
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// What [`Auth::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Missing, malformed, unknown user or wrong password: 401.
    Wrong,
    /// Too many verifications queued: 429, retry shortly.
    Busy,
}

#[derive(Debug)]
pub struct Auth {
    /// (user, hash), labels first then the file; the first entry of a user wins.
    users: Vec<(String, String)>,
    pub forward: bool,
    /// `WWW-Authenticate` of the 401.
    pub challenge: HeaderValue,
    hasher: RandomState,
    cache: Mutex<HashMap<u64, bool>>,
}

impl Auth {
    /// Reads `basic_file` if set (the one piece of I/O; it happens when the
    /// pool enters the routing table). A file that cannot be read, or a line
    /// that is not `user:hash`, leaves its users out and is returned as a
    /// problem; the pool still requires authentication (fail closed).
    pub fn build(spec: &BasicAuth, pool: &str) -> (Auth, Vec<String>) {
        let mut users = spec.users.clone();
        let mut problems = Vec::new();
        if let Some(path) = &spec.file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    for (n, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        match crate::labels::policy::user_hash(line) {
                            Ok(entry) => users.push(entry),
                            Err(e) => problems.push(format!("pool {pool}: {path} line {}: {e}", n + 1)),
                        }
                    }
                }
                Err(e) => problems.push(format!("pool {pool}: cannot read auth.basic_file {path}: {e}")),
            }
        }
        let realm = spec.realm.as_deref().unwrap_or(pool);
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"wharf\""));
        let auth = Auth {
            users,
            forward: spec.forward,
            challenge,
            hasher: RandomState::new(),
            cache: Mutex::new(HashMap::new()),
        };
        (auth, problems)
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Checks an `Authorization` header value (see the module docs for the cost).
    pub async fn check(&self, header: Option<&HeaderValue>) -> Verdict {
        let Some(header) = header else { return Verdict::Wrong };
        let key = self.hasher.hash_one(header.as_bytes());
        if let Some(&ok) = self.cached().get(&key) {
            return if ok { Verdict::Ok } else { Verdict::Wrong };
        }
        let Some((user, password)) = credentials(header) else {
            return Verdict::Wrong;
        };
        let Some(hash) = self.users.iter().find(|(u, _)| *u == user).map(|(_, h)| h.clone()) else {
            self.remember(key, false);
            return Verdict::Wrong;
        };
        if WAITING.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            WAITING.fetch_sub(1, Ordering::AcqRel);
            return Verdict::Busy;
        }
        let permit = tokio::time::timeout(MAX_WAIT, VERIFYING.acquire()).await;
        WAITING.fetch_sub(1, Ordering::AcqRel);
        let Ok(Ok(_permit)) = permit else { return Verdict::Busy };
        let ok = tokio::task::spawn_blocking(move || verify(&password, &hash))
            .await
            .unwrap_or(false);
        self.remember(key, ok);
        if ok {
            Verdict::Ok
        } else {
            Verdict::Wrong
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<u64, bool>> {
        // The map stays consistent whatever panicked while holding it.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, key: u64, ok: bool) {
        let mut cache = self.cached();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, ok);
    }
}

/// `Basic base64(user:password)` → (user, password).
pub fn credentials(header: &HeaderValue) -> Option<(String, String)> {
    let value = header.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Does `password` match the bcrypt or argon2 `hash`? (Slow by design.)
pub fn verify(password: &str, hash: &str) -> bool {
    use argon2::PasswordVerifier as _;
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    match argon2::PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    fn auth(users: &[(&str, &str)]) -> Auth {
        let spec = BasicAuth {
            users: users.iter().map(|(u, h)| (u.to_string(), h.to_string())).collect(),
            file: None,
            forward: false,
            realm: None,
        };
        Auth::build(&spec, "admin").0
    }

    #[test]
    fn credentials_are_read_from_a_basic_header_only() {
        assert_eq!(
            credentials(&basic("ann", "pa:ss")),
            Some(("ann".into(), "pa:ss".into()))
        );
        assert_eq!(credentials(&HeaderValue::from_static("Bearer abc")), None);
        assert_eq!(credentials(&HeaderValue::from_static("Basic !!!")), None);
        assert_eq!(credentials(&HeaderValue::from_static("Basic")), None);
    }

    #[test]
    fn bcrypt_and_argon2_hashes_verify_the_right_password_only() {
        let b = bcrypt::hash("s3cret", 4).unwrap();
        assert!(verify("s3cret", &b) && !verify("s3cret!", &b));
        use argon2::PasswordHasher as _;
        let a = argon2::Argon2::default()
            .hash_password_with_salt(b"s3cret", b"saltsaltsalt1234")
            .unwrap()
            .to_string();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert!(verify("s3cret", &a) && !verify("nope", &a));
        assert!(!verify("s3cret", "plain"));
    }

    #[tokio::test]
    async fn right_wrong_missing_and_unknown_user() {
        let a = auth(&[("ann", &bcrypt::hash("s3cret", 4).unwrap())]);
        assert_eq!(a.check(Some(&basic("ann", "s3cret"))).await, Verdict::Ok);
        assert_eq!(a.check(Some(&basic("ann", "wrong"))).await, Verdict::Wrong);
        assert_eq!(a.check(Some(&basic("bob", "s3cret"))).await, Verdict::Wrong);
        assert_eq!(a.check(None).await, Verdict::Wrong);
        // Cached answers stay the same.
        assert_eq!(a.check(Some(&basic("ann", "s3cret"))).await, Verdict::Ok);
        assert_eq!(a.check(Some(&basic("ann", "wrong"))).await, Verdict::Wrong);
    }

    #[tokio::test]
    async fn a_repeated_header_is_verified_once() {
        // Cost 12: about a quarter of a second per verification; 20 repeats
        // must come from the cache (the first one is the only hash).
        let a = auth(&[("ann", &bcrypt::hash("s3cret", 12).unwrap())]);
        let wrong = basic("ann", "guess");
        let start = std::time::Instant::now();
        assert_eq!(a.check(Some(&wrong)).await, Verdict::Wrong);
        let one = start.elapsed();
        let start = std::time::Instant::now();
        for _ in 0..20 {
            assert_eq!(a.check(Some(&wrong)).await, Verdict::Wrong);
        }
        println!("one verification {one:?}, 20 cached {:?}", start.elapsed());
        assert_eq!(a.cached().len(), 1);
    }

    #[test]
    fn a_basic_file_adds_users_and_reports_bad_lines() {
        let dir = std::env::temp_dir().join(format!("wharf-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users");
        let hash = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(&path, format!("# users\nann:{hash}\n\nbob:plaintext\n")).unwrap();
        let spec = BasicAuth {
            users: vec![],
            file: Some(path.to_string_lossy().into_owned()),
            forward: false,
            realm: Some("Admin area".into()),
        };
        let (a, problems) = Auth::build(&spec, "admin");
        assert_eq!(a.users(), 1);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("line 4") && problems[0].contains("bob"),
            "{problems:?}"
        );
        assert_eq!(a.challenge, "Basic realm=\"Admin area\", charset=\"UTF-8\"");
        let missing = BasicAuth {
            file: Some("/nonexistent/users".into()),
            ..spec
        };
        let (a, problems) = Auth::build(&missing, "admin");
        assert_eq!(a.users(), 0);
        assert!(problems[0].contains("cannot read"), "{problems:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
