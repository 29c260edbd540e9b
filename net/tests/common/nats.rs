//! NATS servers for the cluster's black-box tests (issue 21): `n` `nats-server`s with
//! JetStream, clustered over routes on loopback, each with its own store directory;
//! killed when dropped. `nats-server` is looked up on PATH, then /usr/sbin/nats-server
//! (scripts/deps.sh installs it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released: the caller binds it next), chosen below
/// the kernel's ephemeral range. A port the kernel handed out for `:0` could be handed
/// out again, as the source port of an outgoing connection (a NATS route dialling a
/// server not yet up), before its server binds it: `bind: address already in use`, a
/// test failing for nothing. Below the range the kernel hands nothing out by itself, so
/// only another test could take it, and the ports are drawn apart per process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static DRAWN: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    const FLOOR: u32 = 10_000;
    if low > FLOOR + 1_000 {
        let span = low - FLOOR;
        for _ in 0..span {
            // Spread by process id and a counter (a multiplier coprime with most spans).
            let n = DRAWN
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(7_919)
                .wrapping_add(std::process::id().wrapping_mul(104_729));
            let port = u16::try_from(FLOOR + n % span).unwrap();
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `nats-server` binary.
pub fn nats_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let fallback = PathBuf::from("/usr/sbin/nats-server");
    assert!(fallback.is_file(), "no nats-server on PATH nor at /usr/sbin/nats-server: run scripts/deps.sh");
    fallback
}

/// One server of the NATS cluster.
pub struct NatsServer {
    pub child: Option<Child>,
    pub client_port: u16,
    pub cluster_port: u16,
    pub monitor_port: u16,
    pub name: String,
}

impl NatsServer {
    /// `nats://127.0.0.1:<client port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// Kills it (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `n` clustered servers.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
    pub dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` servers and waits until each answers its health check (JetStream on).
    pub fn start(n: usize) -> NatsCluster {
        let bin = nats_server_bin();
        let dir = tempfile::tempdir().unwrap();
        let mut servers: Vec<NatsServer> = (0..n)
            .map(|i| NatsServer {
                child: None,
                client_port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                name: format!("nats{i}"),
            })
            .collect();
        let routes: Vec<String> = servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.cluster_port)).collect();
        for s in &mut servers {
            let store = dir.path().join(&s.name);
            std::fs::create_dir_all(&store).unwrap();
            let log = std::fs::File::create(dir.path().join(format!("{}.log", s.name))).unwrap();
            let child = Command::new(&bin)
                .args(["-a", "127.0.0.1", "-p", &s.client_port.to_string(), "-m", &s.monitor_port.to_string()])
                .args(["-n", &s.name, "-js", "-sd"])
                .arg(&store)
                .args(["--cluster_name", "dispatch-test", "-cluster"])
                .arg(format!("nats://127.0.0.1:{}", s.cluster_port))
                .args(["-routes", &routes.join(",")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            s.child = Some(child);
        }
        let cluster = NatsCluster { servers, dir };
        for s in &cluster.servers {
            cluster.wait_healthy(s);
        }
        cluster
    }

    /// Every client URL, comma separated (`--cluster`).
    pub fn urls(&self) -> String {
        self.servers.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    fn wait_healthy(&self, s: &NatsServer) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if health_ok(s.monitor_port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never became healthy: {}",
                s.name,
                std::fs::read_to_string(self.dir.path().join(format!("{}.log", s.name))).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            s.kill();
        }
    }
}

/// `GET /healthz` of a server's monitoring port answered 200 (JetStream is up and has
/// its meta leader).
fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    if tcp.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}
