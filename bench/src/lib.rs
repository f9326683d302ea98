//! Benchmark helpers: a loopback HTTP/1.1 load generator, process memory readings, and
//! a scripted browser that signs in against the local provider.
//!
//! The figures are produced by `cargo xtask bench` and written to `docs/benchmarks.md`.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The result of one load run.
#[derive(Clone, Debug)]
pub struct LoadResult {
    /// Responses received.
    pub responses: u64,
    /// Responses whose status was not the expected one.
    pub unexpected: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// CPU time the app's process used during the run, when measured ([`measured`]).
    pub app_cpu: Option<Duration>,
}

impl LoadResult {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.responses as f64 / self.elapsed.as_secs_f64()
    }

    /// The app's CPU time per response, in microseconds, when measured.
    pub fn cpu_per_response(&self) -> Option<f64> {
        let cpu = self.app_cpu?;
        (self.responses > 0).then(|| cpu.as_secs_f64() * 1e6 / self.responses as f64)
    }
}

/// CPU time (user and system, every thread, including threads that ended) that process
/// `pid` has used so far, from `/proc/<pid>/stat`, in clock ticks of 10 ms (Linux's
/// `USER_HZ` is 100 on every architecture the bench runs on). `None` off Linux.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name: field 3 (state) onwards; utime and stime
    // are fields 14 and 15 (proc(5)).
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// `run` (a load) with the CPU time process `pid` used meanwhile: the cost of a request
/// in the app itself, which other work on shared cores disturbs far less than the
/// requests per second do.
pub async fn measured(pid: u32, run: impl std::future::Future<Output = LoadResult>) -> LoadResult {
    let before = cpu_time(pid);
    let mut result = run.await;
    result.app_cpu = before
        .zip(cpu_time(pid))
        .map(|(before, after)| after.saturating_sub(before));
    result
}

/// Sends `GET path` with `cookie` over `connections` keep-alive connections for
/// `duration`, counting responses; a response with a status other than `expect` is
/// counted as unexpected.
pub async fn load(
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
    connections: usize,
    duration: Duration,
    expect: u16,
) -> LoadResult {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    load_with(addr, path, &headers, connections, duration, expect).await
}

/// [`load`] with any request headers (e.g. `authorization`).
pub async fn load_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    connections: usize,
    duration: Duration,
    expect: u16,
) -> LoadResult {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
        let path = path.to_owned();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(stream) = TcpStream::connect(addr).await else {
                    bad.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let io = hyper_util::rt::TokioIo::new(stream);
                let Ok((mut sender, conn)) = http1::handshake::<_, Empty<Bytes>>(io).await else {
                    bad.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                tokio::spawn(conn);
                while !stop.load(Ordering::Relaxed) {
                    let mut req =
                        hyper::Request::get(path.as_str()).header("host", addr.to_string());
                    for (k, v) in &headers {
                        req = req.header(k.as_str(), v.as_str());
                    }
                    let Ok(req) = req.body(Empty::<Bytes>::new()) else {
                        break;
                    };
                    match sender.send_request(req).await {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            // Read the body so the connection can be reused.
                            let _ = resp.into_body().collect().await;
                            if status == expect {
                                ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                bad.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    LoadResult {
        responses: ok.load(Ordering::Relaxed),
        unexpected: bad.load(Ordering::Relaxed),
        elapsed,
        app_cpu: None,
    }
}

/// Resident memory of process `pid` (or this process) in KiB, from `/proc`.
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// Finds the URL in a login page's `<meta http-equiv="refresh" content="0; URL=...">`.
/// The attribute may be quoted with `"` or `'`.
pub fn meta_refresh_target(html: &str) -> Option<String> {
    let at = html.find("URL=")? + 4;
    let end = html[at..].find(['"', '\''])? + at;
    Some(unescape(&html[at..end]))
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_meta_refresh() {
        let html = r#"<meta http-equiv="refresh" content="0; URL=https://p/a?x=1&amp;y=2">"#;
        assert_eq!(
            meta_refresh_target(html).as_deref(),
            Some("https://p/a?x=1&y=2")
        );
    }

    #[test]
    fn finds_meta_refresh_in_single_quotes() {
        let html = "<meta http-equiv='refresh' content='0; URL=https://p/a?x=1&amp;y=2'>";
        assert_eq!(
            meta_refresh_target(html).as_deref(),
            Some("https://p/a?x=1&y=2")
        );
    }

    #[test]
    fn reads_own_rss() {
        assert!(rss_kib(None).unwrap() > 0);
    }
}
