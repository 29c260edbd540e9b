//! Local nats-server processes for tests (cargo feature `testing`): one server or a
//! cluster of `n` with routes on loopback, each with its own temporary store directory.
//!
//! Owns [`NatsCluster`]: the processes, their ports and store directories. Guarantees:
//! every process it started is killed when it is dropped; a server restarted with
//! [`NatsCluster::restart`] keeps its port and its store (it rejoins with its data).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server binary: `nats-server` on PATH, else `/usr/sbin/nats-server`.
pub fn nats_server_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("nats-server")).find(|p| p.is_file()));
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

struct Server {
    port: u16,
    cluster_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// `n` JetStream servers on loopback (a cluster when `n > 1`).
pub struct NatsCluster {
    binary: PathBuf,
    servers: Vec<Server>,
}

/// Starts `n` servers and waits until each accepts connections. Panics (it is for tests)
/// when nats-server is missing or does not start.
pub fn nats_cluster(n: usize) -> NatsCluster {
    let Some(binary) = nats_server_binary() else {
        panic!("nats-server not found (on PATH or /usr/sbin): scripts/deps.sh installs it");
    };
    let mut servers = Vec::new();
    for _ in 0..n {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("temp dir: {e}"),
        };
        servers.push(Server { port: free_port(), cluster_port: free_port(), dir, child: None });
    }
    let mut cluster = NatsCluster { binary, servers };
    for i in 0..n {
        cluster.restart(i);
    }
    cluster
}

impl NatsCluster {
    /// The client URLs, `nats://127.0.0.1:<port>`.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.port)).collect()
    }

    /// Kills server `i` (SIGKILL: no goodbye to its peers).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers.get_mut(i).and_then(|s| s.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again (or the first time), on its port with its store.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let n = self.servers.len();
        let routes: Vec<String> = self.servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.cluster_port)).collect();
        let Some(server) = self.servers.get_mut(i) else { return };
        let mut command = Command::new(&self.binary);
        command
            .arg("-js")
            .arg("-sd")
            .arg(server.dir.path())
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(server.port.to_string())
            .arg("-n")
            .arg(format!("s{i}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if n > 1 {
            command
                .arg("--cluster_name")
                .arg("dispatch-test")
                .arg("--cluster")
                .arg(format!("nats://127.0.0.1:{}", server.cluster_port))
                .arg("--routes")
                .arg(routes.join(","));
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("starting nats-server: {e}"),
        };
        server.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", server.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server s{i} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}
