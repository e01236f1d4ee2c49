//! A real nginx in front of several nodes: plain round-robin, no sticky
//! sessions, the configuration `docs/deploy.md` shows. Started on a free
//! loopback port with its files in a directory of the caller's; stopped
//! when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The longest nginx may take to listen.
const DEADLINE: Duration = Duration::from_secs(10);

/// Sends `sig` (`-TERM`, `-HUP`, ...) to a process.
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `timeout` for a child to exit.
fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Starts nginx in the foreground on the configuration in `dir`, its
/// stderr to `dir/nginx.stderr`.
fn spawn(binary: &Path, dir: &Path) -> Child {
    let prefix = dir.to_str().expect("utf-8 temp dir");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("nginx.stderr"))
        .expect("nginx.stderr");
    Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        // Until it has read the config, nginx logs to the error log it
        // was built with (/var/log/nginx); keep it in the temp dir.
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-g")
        .arg(format!("daemon off; pid {prefix}/nginx.pid;"))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

/// The nginx configuration of the tests, copied into `docs/deploy.md`.
/// `{{PREFIX}}` is the directory of nginx's files, `{{PORT}}` the port it
/// listens on, `{{SERVERS}}` one `server` line per node.
pub const NGINX_CONF: &str = r#"# Switchboard behind nginx: plain round-robin over every node, no sticky
# sessions (a client that reconnects to another node recovers from the
# broker's history there).
worker_processes auto;
error_log {{PREFIX}}/error.log warn;

events {
    worker_connections 1024;
}

http {
    # $uri, not $request: a query string may carry ?token=<JWT>, which must
    # not end up in the logs.
    log_format switchboard '$remote_addr [$time_local] "$request_method $uri" '
                           '$status $body_bytes_sent $request_time '
                           'upstream=$upstream_addr';
    access_log {{PREFIX}}/access.log switchboard;

    client_body_temp_path {{PREFIX}}/client_body_temp;
    proxy_temp_path {{PREFIX}}/proxy_temp;
    fastcgi_temp_path {{PREFIX}}/fastcgi_temp;
    uwsgi_temp_path {{PREFIX}}/uwsgi_temp;
    scgi_temp_path {{PREFIX}}/scgi_temp;

    # "Connection: upgrade" for WebSocket handshakes, "close" otherwise.
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }

    upstream switchboard {
        # Default round-robin; the zone shares its state between workers.
        zone switchboard 64k;
{{SERVERS}}
    }

    server {
        # A queue for thousands of clients reconnecting at once (nginx's
        # default of 511 overflows, and each dropped connect waits 1 s, 3 s,
        # 7 s... to retry); the kernel caps it at net.core.somaxconn.
        listen 127.0.0.1:{{PORT}} backlog=4096;

        location / {
            proxy_pass http://switchboard;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            # The Host as the client sent it, port included: the default
            # same-origin check compares it with the page's Origin.
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # Longer than the heartbeat interval plus its timeout (30 s + 10 s
            # by default): the server's pings keep a quiet socket busy.
            proxy_read_timeout 120s;
            proxy_send_timeout 120s;
            # A draining node refuses new upgrades with 503: try the next.
            proxy_next_upstream error timeout http_503;
        }
    }
}
"#;

/// The nginx binary: on PATH, or in /usr/sbin for users without it on PATH.
fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file());
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "nginx not found: the multi-node tests run a real nginx; \
                 install it with `apt-get install nginx` (scripts/test does)"
            )
        })
}

/// A real nginx with its own config and files in a temp dir; stopped on
/// drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// The directory of its configuration and logs.
    pub dir: PathBuf,
}

impl Nginx {
    /// Writes the config for `upstreams` into `dir` and starts nginx in the
    /// foreground, waiting until it accepts connections.
    pub fn start(dir: &Path, upstreams: &[u16]) -> Nginx {
        Nginx::start_sized(dir, upstreams, 1024)
    }

    /// [`Nginx::start`] with room for `connections` connections per worker
    /// (each proxied WebSocket takes two: the client's and the upstream's),
    /// and as many open files.
    pub fn start_sized(dir: &Path, upstreams: &[u16], connections: usize) -> Nginx {
        let binary = nginx_binary();
        let port = free_port();
        let servers: Vec<String> = upstreams
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p};"))
            .collect();
        let prefix = dir.to_str().expect("utf-8 temp dir");
        let conf = NGINX_CONF
            .replace("{{PREFIX}}", prefix)
            .replace("{{PORT}}", &port.to_string())
            .replace("{{SERVERS}}", &servers.join("\n"))
            .replace(
                "worker_connections 1024;",
                &format!("worker_connections {connections};"),
            )
            .replace(
                "worker_processes auto;",
                &format!(
                    "worker_processes auto;\nworker_rlimit_nofile {};",
                    connections + 64
                ),
            );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut nginx = Nginx {
            child: spawn(&binary, dir),
            port,
            dir: dir.to_path_buf(),
        };
        nginx.wait_listening();
        nginx
    }

    /// Stops nginx the way a restart of the proxy does (its fast shutdown:
    /// every connection through it ends at once, without a WebSocket
    /// close), then starts it again on the same port with the same
    /// configuration and waits until it accepts connections. Returns when
    /// the new nginx listens.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(&nginx_binary(), &self.dir);
        self.wait_listening();
    }

    /// TERM, and KILL if nginx has not exited within 5 seconds.
    fn stop(&mut self) {
        // TERM is nginx's fast shutdown: the master stops its workers and
        // exits. A KILL would leave the workers running.
        signal(self.child.id(), "-TERM");
        if !wait_exit(&mut self.child, Duration::from_secs(5)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Waits until the port accepts connections; panics with the logs if
    /// nginx exits or the deadline passes first.
    fn wait_listening(&mut self) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited with {status}:\n{}", self.logs());
            }
            assert!(
                start.elapsed() < DEADLINE,
                "nginx did not listen:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The access log as written so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Its stderr and error log, for a failure's report.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- stderr\n{}--- error.log\n{}",
            read("nginx.stderr"),
            read("error.log")
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
