//! Helpers of the deploy tests: the repository's files, the tools that
//! check them (found on PATH or in /usr/sbin, with an install hint when
//! missing), a test-made TLS certificate, scratch directories removed on
//! drop, and `switchboard check-config` run with a given environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the repository, as text.
pub(crate) fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Panics unless docs/deploy.md shows the file `rel` verbatim, as a whole
/// fenced block.
pub(crate) fn assert_shown_in_guide(rel: &str) {
    let guide = read("docs/deploy.md");
    let text = read(rel);
    let shown = guide.split("```").skip(1).step_by(2).any(|block| {
        // A block starts with its language tag (possibly empty) and a newline.
        block.split_once('\n').is_some_and(|(_, body)| body == text)
    });
    assert!(
        shown,
        "docs/deploy.md must show {rel} verbatim in a fenced block"
    );
}

/// A command-line tool: on PATH, else in /usr/sbin (where Debian puts
/// haproxy and nginx). Panics with `hint` when it is nowhere.
pub(crate) fn tool(name: &str, hint: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: {hint} (scripts/test installs it)"))
}

/// Runs `cmd`, panicking if it cannot start; returns its output.
pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// stdout and stderr of `out`, for messages.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A scratch directory under Cargo's temp dir for integration tests;
/// removed on drop.
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "deploy-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a scratch dir");
        Scratch(dir)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed EC certificate for `localhost`, made with openssl in
/// `dir`: (certificate, key) paths.
pub(crate) fn self_signed(dir: &Scratch) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let openssl = tool("openssl", "install it with `apt-get install openssl`");
    let out = run(Command::new(openssl)
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(out.status.success(), "openssl req: {}", text(&out));
    (cert, key)
}

/// `switchboard check-config` with exactly `env` (plus PATH): asserts that
/// the settings are valid and draw no warning; returns the effective
/// settings as `key -> value` (the printed TOML's top-level lines).
pub(crate) fn check_config(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let out = run(Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check-config")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env));
    assert!(
        out.status.success(),
        "check-config with {env:?}: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.to_lowercase().contains("warn"),
        "check-config warned: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, rest) = l.split_once(" = ")?;
            let value = rest.split("  #").next().unwrap_or(rest).trim();
            Some((key.to_string(), value.trim_matches('"').to_string()))
        })
        .collect()
}

/// A setting of [`check_config`]'s answer, as a number.
pub(crate) fn number(settings: &BTreeMap<String, String>, key: &str) -> f64 {
    settings
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key} in {settings:?}"))
}
