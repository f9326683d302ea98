//! Child processes for tests: started, awaited on a readiness line with a timeout,
//! their output kept for failure messages, and killed when dropped.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How many lines of a process's output are kept for failure messages.
const KEPT_LINES: usize = 400;

/// A free TCP port on 127.0.0.1 for a server a test starts (a sample app, a
/// redis-server, a provider).
///
/// The port is taken below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`): ports in that range are what `bind` to
/// port 0 and every outgoing connection receive, so a port found by binding to 0 and
/// releasing it can be handed to the next listener or connection on the machine before
/// the server binds it. Below the range only another test's choice can take it: the
/// port is random among thousands and checked free. Where the range cannot be read (or
/// leaves no room below it), it falls back to binding port 0.
pub fn free_port() -> u16 {
    use rand::Rng;
    if let Some(low) = ephemeral_low() {
        let mut rng = rand::thread_rng();
        for _ in 0..64 {
            let port = rng.gen_range(BELOW_EPHEMERAL_FROM..low);
            if TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// The lowest port [`free_port`] picks (well-known services live below it).
const BELOW_EPHEMERAL_FROM: u16 = 10_000;

/// The first port of the kernel's ephemeral range, when it can be read and leaves room
/// for [`free_port`] below it.
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|low| *low > BELOW_EPHEMERAL_FROM + 1_000)
}

/// Finds `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A running child process. Its stdout and stderr lines are kept (the last few
/// hundred) for [`Service::log`]; dropping it kills the process.
pub struct Service {
    name: String,
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .finish()
    }
}

fn pump<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
    stream: &'static str,
    log: Arc<Mutex<VecDeque<String>>>,
    lines_tx: mpsc::UnboundedSender<String>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                if log.len() == KEPT_LINES {
                    log.pop_front();
                }
                log.push_back(format!("{stream}| {line}"));
            }
            let _ = lines_tx.send(line);
        }
    });
}

impl Service {
    /// Starts `cmd` (stdin closed, stdout and stderr captured, killed on drop) and
    /// waits until a line of its output satisfies `ready`, it exits, or `timeout`
    /// passes. The error carries the process's output.
    pub async fn spawn(
        name: &str,
        mut cmd: Command,
        ready: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<Service, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        if let Some(out) = child.stdout.take() {
            pump(out, "out", log.clone(), tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            pump(err, "err", log.clone(), tx);
        }
        let mut service = Service {
            name: name.to_owned(),
            child,
            log,
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(line) if ready(&line) => break,
                    Some(_) => {}
                    None => {
                        // Both streams closed: the process is exiting.
                        let status = service.child.wait().await;
                        return Err(format!(
                            "{name} exited before it was ready ({status:?})\n{}",
                            service.log()
                        ));
                    }
                },
                status = service.child.wait() => {
                    // Give the pumps a moment to drain what it printed.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return Err(format!(
                        "{name} exited before it was ready ({status:?})\n{}",
                        service.log()
                    ));
                }
                _ = &mut deadline => {
                    return Err(format!(
                        "{name} printed no readiness line within {timeout:?}\n{}",
                        service.log()
                    ));
                }
            }
        }
        // Keep draining output after readiness so the child never blocks on a full pipe.
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        Ok(service)
    }

    /// The process's name, as given to [`Service::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last lines the process printed, each prefixed with `out|` or `err|`.
    pub fn log(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = format!("---- output of {} ----\n", self.name);
        for line in log.iter() {
            s.push_str(line);
            s.push('\n');
        }
        s.push_str("---- end ----");
        s
    }

    /// The first line the process printed (on either stream) that starts with `prefix`,
    /// without the prefix, among the lines kept.
    pub fn line_after(&self, prefix: &str) -> Option<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().find_map(|l| {
            let line = l.split_once("| ").map_or(l.as_str(), |(_, rest)| rest);
            line.strip_prefix(prefix).map(|v| v.trim().to_owned())
        })
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports found free lie below the kernel's ephemeral range (where it can be read), so
    /// `bind(0)` and outgoing connections never take them; and they can be bound.
    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_bindable() {
        for _ in 0..20 {
            let port = free_port();
            if let Some(low) = ephemeral_low() {
                assert!(
                    (BELOW_EPHEMERAL_FROM..low).contains(&port),
                    "{port} vs {low}"
                );
            }
            TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                .unwrap_or_else(|e| panic!("{port}: {e}"));
        }
    }
}
