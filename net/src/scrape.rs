//! The metrics endpoint's socket: a tiny HTTP/1.0 responder on one thread that answers
//! `GET /metrics` with the text a caller renders (Prometheus text format) and anything else with
//! 404. What the text says is the caller's business (net knows no metric families).
//!
//! A scraper cannot stall it for long or make it hold much: a request is read with a deadline
//! and at most [`MAX_REQUEST_BYTES`]; one connection is served at a time and then closed.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Renders the body of a scrape into the buffer it is given (cleared before each call).
pub type RenderMetrics = Arc<dyn Fn(&mut String) + Send + Sync>;

/// The most bytes of a request read before it is refused.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long one scrape may take to send its request (and to take its reply).
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running metrics endpoint; stops (and joins its thread) when dropped.
pub struct ScrapeEndpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScrapeEndpoint {
    /// Listens on `addr` (port 0 picks one) and serves scrapes with `render` on a thread of
    /// its own.
    pub fn start(addr: SocketAddr, render: RenderMetrics) -> std::io::Result<ScrapeEndpoint> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&listener, &flag, &render))?;
        Ok(ScrapeEndpoint {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ScrapeEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; it sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool, render: &RenderMetrics) {
    let mut body = String::new();
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, render, &mut body) {
                    tracing::debug!("metrics scrape failed: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("metrics endpoint: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request (bounded in bytes and time) and answers it.
fn answer(mut stream: TcpStream, render: &RenderMetrics, body: &mut String) -> std::io::Result<()> {
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let head = match read_head(&mut stream)? {
        Some(head) => head,
        None => return respond(&mut stream, "431 Request Header Fields Too Large", ""),
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    if method != "GET" || path != "/metrics" {
        return respond(&mut stream, "404 Not Found", "");
    }
    body.clear();
    render(body);
    respond(&mut stream, "200 OK", body)
}

/// The request up to its blank line; `None` when it is larger than [`MAX_REQUEST_BYTES`].
/// Times out [`SCRAPE_TIMEOUT`] after the connection was accepted, however slowly bytes come.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let deadline = Instant::now() + SCRAPE_TIMEOUT;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(ErrorKind::TimedOut, "request too slow"));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "closed before the request ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Ok(None);
        }
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> ScrapeEndpoint {
        let render: RenderMetrics = Arc::new(|out: &mut String| out.push_str("ferrops_up 1\n"));
        ScrapeEndpoint::start("127.0.0.1:0".parse().unwrap(), render).unwrap()
    }

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    }

    #[test]
    fn metrics_are_served_as_prometheus_text() {
        let ep = endpoint();
        let reply = get(ep.local_addr(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
        assert!(
            reply.contains("Content-Type: text/plain; version=0.0.4"),
            "{reply}"
        );
        assert!(reply.ends_with("\r\n\r\nferrops_up 1\n"), "{reply}");
    }

    #[test]
    fn other_paths_and_methods_are_not_found() {
        let ep = endpoint();
        for req in ["GET / HTTP/1.1\r\n\r\n", "POST /metrics HTTP/1.1\r\n\r\n"] {
            let reply = get(ep.local_addr(), req);
            assert!(reply.starts_with("HTTP/1.0 404"), "{req:?}: {reply}");
            assert!(!reply.contains("ferrops_up"), "{reply}");
        }
    }

    #[test]
    fn an_oversized_request_is_refused() {
        let ep = endpoint();
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        let mut s = TcpStream::connect(ep.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.write_all(big.as_bytes());
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.0 431"), "{reply}");
    }

    #[test]
    fn a_silent_scraper_does_not_stall_the_next_one() {
        let ep = endpoint();
        let _silent = TcpStream::connect(ep.local_addr()).unwrap();
        let started = Instant::now();
        let reply = get(ep.local_addr(), "GET /metrics HTTP/1.0\r\n\r\n");
        assert!(reply.contains("ferrops_up 1"), "{reply}");
        // Served after the silent one's deadline at the latest (generous on a loaded machine).
        assert!(started.elapsed() < SCRAPE_TIMEOUT + Duration::from_secs(20));
    }
}
