//! The server under test: a `confab serve` process on free loopback ports
//! with its own data directory, started fresh for each scenario so that no
//! run measures what an earlier one left behind, and killed on drop. The
//! crash cycles kill it with SIGKILL and start it again on the same data
//! directory and ports; with power cuts, its data directory is a
//! [`PowerCut`] filesystem that forgets every unsynced write at each kill.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use confab_powercut::{Cut, PowerCut};

/// A `confab serve` process on free loopback ports, killed on drop.
pub(crate) struct Server {
    child: Child,
    /// Unmounted (on drop) after the child is killed and before the
    /// directory holding it is removed.
    power: Option<PowerCut>,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    /// `data_dir`: `dir` itself, or the power-cut mount inside it.
    data: PathBuf,
    confab: PathBuf,
    config: PathBuf,
    pub(crate) api: u16,
    pub(crate) metrics: u16,
}

/// `confab serve` on `config`, its log appended to `dir/server.log`.
fn spawn(confab: &Path, config: &Path, dir: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))?;
    Command::new(confab)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("CONFAB_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", confab.display()))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Server {
    pub(crate) fn start(confab: &Path, sync: &str) -> Result<Server> {
        Server::start_on(confab, sync, false)
    }

    /// A server whose data directory is a power-cut filesystem (`power`)
    /// or a plain directory.
    pub(crate) fn start_on(confab: &Path, sync: &str, power: bool) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let (data, power) = if power {
            let (disk, data) = (dir.path().join("disk"), dir.path().join("data"));
            std::fs::create_dir(&disk)?;
            std::fs::create_dir(&data)?;
            (data.clone(), Some(PowerCut::mount(&disk, &data)?))
        } else {
            (dir.path().to_owned(), None)
        };
        let (api, ws, quic, metrics) = (free_port()?, free_port()?, free_udp_port()?, free_port()?);
        // Cheap password hashing so that signing up thousands of virtual
        // users measures the API and not argon2; a send limit far above
        // any one virtual user's rate, so that only the server's capacity
        // limits the run.
        let config = format!(
            r#"data_dir = "{data}"
[api]
addr = "127.0.0.1:{api}"
password_memory_kib = 64
password_iterations = 1
[gateway]
ws_addr = "127.0.0.1:{ws}"
quic_addr = "127.0.0.1:{quic}"
send_rate_per_s = 1000000
send_burst = 1000000
[metrics]
addr = "127.0.0.1:{metrics}"
[storage]
sync = "{sync}"
"#,
            data = data.display()
        );
        let path = dir.path().join("bench.toml");
        std::fs::write(&path, config)?;
        let child = spawn(confab, &path, dir.path())?;
        let mut server = Server {
            child,
            power,
            dir: dir.path().to_owned(),
            data,
            _dir: dir,
            confab: confab.to_owned(),
            config: path,
            api,
            metrics,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Kills the server with SIGKILL (no shutdown path runs: what it had
    /// not written is lost as in a crash), cuts the power when its data is
    /// on a power-cut filesystem (once it is dead, so that nothing it wrote
    /// lands after the cut), then starts it again on the same data
    /// directory and ports; returns how long it took to be ready and what
    /// the cut took back.
    pub(crate) fn crash_and_restart(&mut self) -> Result<(Duration, Option<Cut>)> {
        self.child.kill().context("killing the server")?;
        self.child.wait()?;
        let cut = match &self.power {
            Some(p) => Some(p.cut().context("cutting the power")?),
            None => None,
        };
        let started = Instant::now();
        self.child = spawn(&self.confab, &self.config, &self.dir)?;
        self.wait_ready()?;
        Ok((started.elapsed(), cut))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr: SocketAddr = ([127, 0, 0, 1], self.api).into();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                bail!("the server exited ({status}):\n{log}");
            }
            if Instant::now() > deadline {
                bail!("the server did not become ready in 60 s");
            }
            if let Ok(mut s) = TcpStream::connect(addr) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn cert(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.data.join("tls"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "crt"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
