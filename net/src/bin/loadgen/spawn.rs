//! `--spawn`: a `dispatchd --dev --demo --demo-drivers 0` of the load generator's own (the
//! binary beside this one) on a temporary data dir, with the per-user rate limits, the
//! per-address connection cap and the staff socket cap opened up for the run: the run
//! measures the engine and the server, not the rate limiter (which answers 429 in
//! microseconds), and every connection comes from 127.0.0.1.
//!
//! Guarantees: [`Spawned::start`] answers a server that said `listening on`, or an error
//! quoting the end of its log (never a panic); dropping a [`Spawned`] stops the server
//! (SIGTERM, then SIGKILL after [`STOP_WAIT`]) and removes its directory; the server's
//! stdout is drained for its whole life, so it never blocks or fails writing to it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// The admin token of a spawned server.
pub const ADMIN_TOKEN: &str = "loadgen-admin-token-0123456789abcdef";

/// Longest wait for the spawned server to listen.
const START_WAIT: Duration = Duration::from_secs(30);

/// Longest wait for the spawned server to stop after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// The config of a spawned server (a server started without `--spawn` needs the same
/// `[server]` keys for a large run).
const CONFIG: &str = "[server]\nmax_connections_per_ip = 1000000\nws_per_staff = 1000000\n\
    [limits]\ntrip_create_per_min = 100000\naccept_per_min = 100000\nuser_per_min = 1000000\n\
    ip_per_min = 100000\nopen_trips_per_rider = 100\nlocation_min_interval_ms = 500\n";

/// A running `dispatchd` of our own.
pub struct Spawned {
    child: Child,
    dir: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Spawned {
    /// Starts `dispatchd` on 127.0.0.1:`port` (0: a free port it picks) and waits until it
    /// listens.
    pub fn start(port: u16) -> Result<Spawned, Error> {
        let exe = std::env::current_exe().map_err(|e| Error::Spawn(format!("cannot find our own path: {e}")))?;
        let dispatchd = exe.with_file_name("dispatchd");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = std::env::temp_dir().join(format!("dispatch-loadgen-{}-{nanos}", std::process::id()));
        let io = |what: &str, e: std::io::Error| Error::Spawn(format!("{what} in {}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(|e| io("cannot create the data dir", e))?;
        let config = dir.join("dispatch.toml");
        std::fs::write(&config, CONFIG).map_err(|e| io("cannot write the config", e))?;
        let log = std::fs::File::create(dir.join("dispatchd.log")).map_err(|e| io("cannot create the log", e))?;
        let child = Command::new(&dispatchd)
            .args(["serve", "--dev", "--demo", "--demo-drivers", "0", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&config)
            .env("DISPATCH_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("DISPATCH_TOKEN_SECRET", "loadgen-token-secret-0123456789abcdef0123")
            .env("DISPATCH_WEBHOOK_SECRET_SIM", "loadgen-webhook-secret-0123456789")
            .env("DISPATCH_SMS_SINK", format!("file:{}", dir.join("sms.jsonl").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::Spawn(format!(
                    "cannot start {}: {e} (build it: cargo build --release -p dispatch-server)",
                    dispatchd.display()
                )));
            }
        };
        // Its stdout is read to its end: the address it listens on, then whatever else.
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            });
        }
        // From here on, dropping `server` stops the child and removes the directory.
        let mut server = Spawned { child, dir, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        let said = rx.recv_timeout(START_WAIT);
        match said.ok().map(|a| a.parse::<SocketAddr>()) {
            Some(Ok(addr)) => {
                server.addr = addr;
                Ok(server)
            }
            Some(Err(e)) => Err(Error::Spawn(format!("dispatchd said an address that is not one: {e}"))),
            None => Err(Error::Spawn(format!(
                "dispatchd did not listen within {} s; the end of its log:\n{}",
                START_WAIT.as_secs(),
                log_tail(&server.dir.join("dispatchd.log"))
            ))),
        }
    }
}

impl Spawned {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + STOP_WAIT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The last lines of a log file (or why it cannot be read).
fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
