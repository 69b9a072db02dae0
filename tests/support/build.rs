//! Building the static binaries and the `FROM scratch` images, once per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;

/// The Rust target the static binaries are built for.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Repository of the wharf image built by [`wharf_image`].
pub const WHARF_IMAGE: &str = "wharf-it/wharf";
/// Repository of the demo backend image built by [`demo_image`].
pub const DEMO_IMAGE: &str = "wharf-it/demo";

/// `repo:test-<checkout>`: each checkout of the repository (a CI clone, a git
/// worktree) builds its own tag, so test runs in two checkouts at once never
/// run each other's binaries. `WHARF_IT_TAG` overrides the suffix: `.ci/run`
/// sets it so its leak check can tell this run's containers from those of any
/// other checkout's tests on the same daemon.
fn checkout_tag(repo: &str) -> &'static str {
    use std::hash::{Hash, Hasher};
    if let Ok(tag) = std::env::var("WHARF_IT_TAG") {
        if !tag.is_empty() {
            return Box::leak(format!("{repo}:test-{tag}").into_boxed_str());
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    workspace_root().hash(&mut h);
    Box::leak(format!("{repo}:test-{:08x}", h.finish() as u32).into_boxed_str())
}

/// The runtime stage of the Dockerfile and of scripts/build-image.sh: starts
/// as root, switches to `WHARF_USER` (65534), which owns an empty `/acme`
/// for the ACME volume.
const WHARF_DOCKERFILE: &str = r#"FROM scratch
COPY wharf /wharf
COPY --chown=65534:65534 acme /acme
ENV WHARF_USER=65534:65534 WHARF_LISTEN=0.0.0.0:80 WHARF_ADMIN_LISTEN=0.0.0.0:8081
EXPOSE 80 8081
HEALTHCHECK --interval=5s --timeout=3s CMD ["/wharf","healthcheck"]
ENTRYPOINT ["/wharf"]
"#;

const DEMO_DOCKERFILE: &str = r#"FROM scratch
COPY wharf-demo /wharf-demo
EXPOSE 80
ENTRYPOINT ["/wharf-demo"]
"#;

/// Paths of the statically linked executables built by [`binaries`].
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `wharf` (the load balancer).
    pub wharf: PathBuf,
    /// `wharf-demo` (the whoami-like test backend).
    pub demo: PathBuf,
}

/// The workspace root (the root package's manifest dir).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds every binary of the workspace, statically linked, once per test
/// process, and returns their paths. Panics with cargo's output if the build fails.
///
/// Runs `cargo build --workspace --bins --target x86_64-unknown-linux-gnu` with
/// `RUSTFLAGS=-C target-feature=+crt-static` and `CARGO_TARGET_DIR=<root>/target/static`.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();
    match BINARIES.get_or_init(build_binaries) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

fn build_binaries() -> Result<Binaries, String> {
    let root = workspace_root();
    let target_dir = root.join("target").join("static");
    eprintln!(
        "building static binaries… (cargo build --workspace --bins --target {TARGET}, target dir {})",
        target_dir.display()
    );
    let started = Instant::now();
    let out = Command::new(env!("CARGO"))
        .args(["build", "--workspace", "--bins", "--target", TARGET])
        .current_dir(&root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // Incremental state is shared by concurrent test processes and helpers
        // building the same crate; it races. Static test builds don't need it.
        .env("CARGO_INCREMENTAL", "0")
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .map_err(|e| format!("cannot run cargo ({}): {e}", env!("CARGO")))?;
    if !out.status.success() {
        return Err(format!(
            "building the static binaries failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprintln!(
        "building static binaries: took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let dir = target_dir.join(TARGET).join("debug");
    let bins = Binaries {
        wharf: dir.join("wharf"),
        demo: dir.join("wharf-demo"),
    };
    for path in [&bins.wharf, &bins.demo] {
        check_static(path)?;
    }
    Ok(bins)
}

/// Fails unless `path` is an ELF executable without a program interpreter
/// (i.e. it will run in a `FROM scratch` image).
fn check_static(path: &Path) -> Result<(), String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |why: &str| Err(format!("{} {why}", path.display()));
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return bad("is not a little-endian ELF64 executable");
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if ph + 4 > data.len() {
            return bad("has a truncated program header table");
        }
        const PT_INTERP: u32 = 3;
        if u32::from_le_bytes(data[ph..ph + 4].try_into().unwrap()) == PT_INTERP {
            return bad("is dynamically linked (has PT_INTERP); it would not run FROM scratch");
        }
    }
    Ok(())
}

/// Panics with a clear message unless the Docker daemon answers `docker info`.
/// Checked once per process; every Docker-touching helper calls it.
pub fn require_docker() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let res = CHECK.get_or_init(|| {
        match Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
        {
            Err(e) => Err(format!("cannot run the docker CLI: {e}")),
            Ok(o) if !o.status.success() => Err(format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Ok(_) => Ok(()),
        }
    });
    if let Err(e) = res {
        panic!("Docker daemon not reachable: {e}\nthese tests need a running Docker Engine (they never skip)");
    }
}

/// Builds (once per test process) and returns the wharf image tag,
/// `wharf-it/wharf:test-<checkout>`.
pub fn wharf_image() -> &'static str {
    static IMAGE: OnceLock<Result<(), String>> = OnceLock::new();
    let tag = checkout_tag(WHARF_IMAGE);
    built_once(&IMAGE, tag, || {
        build_image(tag, &binaries().wharf, "wharf", WHARF_DOCKERFILE, &["acme"])
    })
}

/// Builds (once per test process) and returns the demo backend image tag,
/// `wharf-it/demo:test-<checkout>`.
pub fn demo_image() -> &'static str {
    static IMAGE: OnceLock<Result<(), String>> = OnceLock::new();
    let tag = checkout_tag(DEMO_IMAGE);
    built_once(&IMAGE, tag, || {
        build_image(tag, &binaries().demo, "wharf-demo", DEMO_DOCKERFILE, &[])
    })
}

/// `tag` once `build` has run (the first call only) and succeeded; panics
/// with the build's error on every call otherwise.
fn built_once(
    once: &OnceLock<Result<(), String>>,
    tag: &'static str,
    build: impl FnOnce() -> Result<(), String>,
) -> &'static str {
    match once.get_or_init(build) {
        Ok(()) => tag,
        Err(e) => panic!("{e}"),
    }
}

/// Builds `tag` from an in-memory context holding `binary` (as `name`),
/// `dockerfile` and the empty directories `dirs`, via the Docker API. Runs on its own thread and runtime so it
/// can be called from sync code and from inside `#[tokio::test]` alike.
fn build_image(tag: &str, binary: &Path, name: &str, dockerfile: &str, dirs: &[&str]) -> Result<(), String> {
    require_docker();
    eprintln!("building image {tag}…");
    let started = Instant::now();
    let context = tar_context(binary, name, dockerfile, dirs)?;
    let old_id = image_id(tag);
    let tag_owned = tag.to_string();
    let result = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?
            .block_on(build_image_async(&tag_owned, context))
    })
    .join()
    .map_err(|_| format!("building image {tag}: builder thread panicked"))?;
    result.map_err(|e| format!("building image {tag} failed: {e}"))?;
    eprintln!("building image {tag}: took {:.1} s", started.elapsed().as_secs_f64());
    // Drop the image this build replaced if it is now dangling (no tag left),
    // so rebuilds don't pile up images. Fails harmlessly if a container (maybe
    // another process's) still uses it.
    if let (Some(old), Some(new)) = (old_id, image_id(tag)) {
        let tags = Command::new("docker")
            .args(["image", "inspect", "--format", "{{len .RepoTags}}", &old])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if old != new && matches!(tags.as_deref(), Ok("0")) {
            let _ = Command::new("docker").args(["image", "rm", &old]).output();
        }
    }
    Ok(())
}

fn image_id(tag: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", tag])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn tar_context(binary: &Path, name: &str, dockerfile: &str, dirs: &[&str]) -> Result<Vec<u8>, String> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    // Docker's tar reader rejects GNU sparse entries (header type 'S'), which
    // the tar crate emits for binaries the linker wrote with holes.
    tar.sparse(false);
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .map_err(|e| format!("tar Dockerfile: {e}"))?;
    for dir in dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, format!("{dir}/"), std::io::empty())
            .map_err(|e| format!("tar {dir}/: {e}"))?;
    }
    let mut file = std::fs::File::open(binary).map_err(|e| format!("open {}: {e}", binary.display()))?;
    tar.append_file(name, &mut file)
        .map_err(|e| format!("tar {}: {e}", binary.display()))?;
    tar.into_inner().map_err(|e| format!("tar: {e}"))
}

async fn build_image_async(tag: &str, context: Vec<u8>) -> Result<(), String> {
    let docker = Docker::connect_with_defaults()
        .map_err(|e| format!("connect to Docker: {e}"))?
        // The daemon may be older than bollard's default API version (1.41 vs 1.53).
        .negotiate_version()
        .await
        .map_err(|e| format!("negotiate Docker API version: {e}"))?;
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut log = String::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| format!("{e}\nbuild output so far:\n{log}"))?;
        if let Some(s) = &info.stream {
            log.push_str(s);
        }
        if let Some(detail) = info.error_detail {
            return Err(format!(
                "{}\nbuild output so far:\n{log}",
                detail.message.unwrap_or_default()
            ));
        }
    }
    Ok(())
}
