//! Prometheus metrics over real processes: a scheduler and a server started by hand with
//! `--metrics-addr 127.0.0.1:0`, and a worker (the library, in this process) with its own
//! endpoint. Every endpoint is scraped over HTTP, before and after more pushes and pulls, and
//! the series must move: counts by exactly what was sent, bytes by what the values weigh,
//! latency histograms by one observation per request; connections and refused handshakes are
//! counted too. `ferrops local --metrics` gives every child its own endpoint.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrops::{ClusterConfig, TableSpec, Worker, WorkerConfig};
use ferrops_net::auth::{ClusterKey, Secret};

const SECRET: &str = "metrics-test-secret";

/// A child whose stderr lines arrive on a channel.
struct Role {
    child: Child,
    log: common::LineLog,
}

impl Role {
    fn spawn(command: &mut Command) -> Role {
        let mut child = command
            .env("FERROPS_SECRET", SECRET)
            .env("FERROPS_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = common::LineLog::follow(child.stderr.take().unwrap());
        Role { child, log }
    }

    fn wait_for_log(&self, text: &str) -> String {
        self.log.wait_for(text, Duration::from_secs(120))
    }

    /// The address of the `metrics on http://IP:PORT/metrics` line.
    fn metrics_addr(&self) -> SocketAddr {
        metrics_addr_in(&self.wait_for_log("metrics on http://"))
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metrics_addr_in(line: &str) -> SocketAddr {
    let rest = line.split("metrics on http://").nth(1).unwrap();
    rest.split("/metrics").next().unwrap().parse().unwrap()
}

/// `GET path` over HTTP: the status line and the body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The scrape's value of `series` (name and labels exactly as rendered); 0 when absent.
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK", "{body}");
    body
}

fn start_scheduler_and_server() -> (Role, SocketAddr, Role) {
    let mut scheduler = Role::spawn(
        Command::new(env!("CARGO_BIN_EXE_ferrops"))
            .args(["scheduler", "--bind", "127.0.0.1:0"])
            .args(["--num-servers", "1", "--num-workers", "1"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .stdout(Stdio::piped()),
    );
    let addr: SocketAddr = common::announced_address(&mut scheduler.child)
        .parse()
        .unwrap();
    let server = Role::spawn(
        Command::new(env!("CARGO_BIN_EXE_ferrops"))
            .args(["server", "--scheduler", &addr.to_string()])
            .args(["--num-servers", "1", "--num-workers", "1"])
            .env("FERROPS_METRICS_ADDR", "127.0.0.1:0"),
    );
    (scheduler, addr, server)
}

#[test]
fn every_role_serves_metrics_that_move_with_the_work() {
    let (scheduler, scheduler_addr, server) = start_scheduler_and_server();
    let scheduler_metrics = scheduler.metrics_addr();
    let server_metrics = server.metrics_addr();
    let server_addr: SocketAddr = {
        let l = server.wait_for_log("server listening on ");
        let rest = l.rsplit("server listening on ").next().unwrap();
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let mut cluster = ClusterConfig::new(scheduler_addr, 1, 1);
    cluster.key = ClusterKey::Secret(Secret::new(SECRET).unwrap());
    cluster.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let worker = Worker::connect(&WorkerConfig { cluster }).expect("worker connects");
    let worker_metrics = worker.metrics_addr().expect("the worker serves metrics");

    let dim = 4;
    let table = worker.declare_table(TableSpec::new("emb", dim)).unwrap();
    let keys: Vec<u64> = (0..16).collect();
    let values = vec![1.0f32; keys.len() * dim as usize];
    let value_bytes = (values.len() * 4) as f64;
    let work = |rounds: usize| {
        for _ in 0..rounds {
            worker.push(table, &keys, &values).unwrap();
            worker.pull(table, &keys).unwrap();
        }
    };
    // The server counts a request after answering it: wait for the last count (the latency
    // histogram's, updated last) before reading the others.
    let handled = |op: &str| format!("ferrops_request_seconds_count{{table=\"emb\",op=\"{op}\"}}");
    let settled = |rounds: f64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = scrape(server_metrics);
            if value(&body, &handled("push")) >= rounds && value(&body, &handled("pull")) >= rounds
            {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "the server never counted {rounds} rounds: {body}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    work(3);
    let s1 = settled(3.0);
    let w1 = scrape(worker_metrics);
    work(5);
    let s2 = settled(8.0);
    let w2 = scrape(worker_metrics);

    let at_server = "{peer=\"worker-0\",table=\"emb\"}";
    let pushes = format!("ferrops_pushes_total{at_server}");
    assert_eq!(value(&s1, &pushes), 3.0, "{s1}");
    assert_eq!(value(&s2, &pushes), 8.0, "{s2}");
    let pulls = format!("ferrops_pulls_total{at_server}");
    assert_eq!(value(&s2, &pulls) - value(&s1, &pulls), 5.0);
    let bytes = format!("ferrops_push_bytes_total{at_server}");
    assert_eq!(value(&s2, &bytes) - value(&s1, &bytes), 5.0 * value_bytes);
    let bytes = format!("ferrops_pull_bytes_total{at_server}");
    assert_eq!(value(&s2, &bytes) - value(&s1, &bytes), 5.0 * value_bytes);
    assert_eq!(
        value(&s2, &handled("push")) - value(&s1, &handled("push")),
        5.0,
        "{s2}"
    );
    assert!(
        wait_for_memory_gauge(server_metrics),
        "each table's memory is a gauge"
    );
    assert!(
        value(&s2, "ferrops_connections_open") >= 2.0,
        "scheduler and worker: {s2}"
    );
    assert_eq!(value(&s2, "ferrops_role{role=\"server\"}"), 1.0);

    let at_worker = "{peer=\"server-0\",table=\"emb\"}";
    let pushes = format!("ferrops_pushes_total{at_worker}");
    assert_eq!(value(&w2, &pushes) - value(&w1, &pushes), 5.0, "{w2}");
    let bytes = format!("ferrops_pull_bytes_total{at_worker}");
    assert_eq!(value(&w2, &bytes) - value(&w1, &bytes), 5.0 * value_bytes);
    let trips = "ferrops_round_trip_seconds_count{table=\"emb\",op=\"pull\"}";
    assert_eq!(value(&w2, trips) - value(&w1, trips), 5.0, "{w2}");
    assert!(value(&w2, "ferrops_bytes_sent_total") > value(&w1, "ferrops_bytes_sent_total"));

    // A connection without the secret is refused, and counted.
    let failures = value(&s2, "ferrops_auth_failures_total");
    let mut stranger = TcpStream::connect(server_addr).unwrap();
    stranger.write_all(&[0xAB; 64]).unwrap();
    let mut sink = Vec::new();
    stranger
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let _ = stranger.read_to_end(&mut sink);
    let deadline = Instant::now() + Duration::from_secs(60);
    while value(&scrape(server_metrics), "ferrops_auth_failures_total") <= failures {
        assert!(
            Instant::now() < deadline,
            "the refused handshake was never counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let sched = scrape(scheduler_metrics);
    assert_eq!(
        value(&sched, "ferrops_role{role=\"scheduler\"}"),
        1.0,
        "{sched}"
    );
    assert!(value(&sched, "ferrops_connections_open") >= 2.0, "{sched}");
    // A changed-only pull goes through the server's `changed_since` filter.
    let mut out = vec![0.0f32; values.len()];
    worker
        .pull_changed_into(table, &keys, &mut out, 0.5)
        .unwrap();
    let filtered = "ferrops_filter_coordinates_total{filter=\"changed_since\",outcome=\"offered\"}";
    let s3 = settled(8.0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut s3 = s3;
    while value(&s3, filtered) < keys.len() as f64 {
        assert!(
            Instant::now() < deadline,
            "the filter's rows were never counted: {s3}"
        );
        std::thread::sleep(Duration::from_millis(20));
        s3 = scrape(server_metrics);
    }
    let all = format!("{s3}{w2}{sched}");
    for name in dashboard_series() {
        let base = name
            .strip_suffix("_total")
            .or_else(|| name.strip_suffix("_bucket"))
            .unwrap_or(&name);
        let declared = format!("# TYPE {base} ");
        assert!(
            all.contains(&declared),
            "the dashboard's {name} is served by no role"
        );
    }
    let (status, _) = get(server_metrics, "/nothing");
    assert!(status.starts_with("HTTP/1.0 404"), "{status}");

    worker.finish().unwrap();
    drop((scheduler, server));
}

/// Every `ferrops_*` series the Grafana dashboard queries.
fn dashboard_series() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana-dashboard.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut names: Vec<String> = text
        .match_indices("ferrops_")
        .map(|(i, _)| {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() > 10, "{names:?}");
    names
}

/// The memory gauges are set on the server's tick: waits for one to be set.
fn wait_for_memory_gauge(addr: SocketAddr) -> bool {
    let series = "ferrops_table_memory_bytes{table=\"emb\",kind=\"values\",shard=\"0\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if value(&scrape(addr), series) > 0.0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn local_metrics_gives_every_child_its_own_endpoint() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrops"))
        .args([
            "local",
            "--metrics",
            "--servers",
            "2",
            "--workers",
            "1",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_ferrops"))
        .args(["worker", "--job", "check"])
        .env_remove("FERROPS_LOG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let addrs: Vec<SocketAddr> = text
        .lines()
        .filter(|l| l.contains("metrics on http://"))
        .map(metrics_addr_in)
        .collect();
    assert_eq!(
        addrs.len(),
        4,
        "scheduler, two servers and the worker: {text}"
    );
    let mut ports: Vec<u16> = addrs.iter().map(SocketAddr::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4, "each its own port: {addrs:?}");
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
}

#[test]
fn replication_lag_and_failovers_are_counted() {
    // Two servers holding each range twice, one worker; a killed server's connection closing
    // is how the scheduler learns of it here.
    let job = [
        "--replication",
        "2",
        "--num-servers",
        "2",
        "--num-workers",
        "1",
    ];
    let mut scheduler = Role::spawn(
        Command::new(env!("CARGO_BIN_EXE_ferrops"))
            .args([
                "scheduler",
                "--bind",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(job)
            .stdout(Stdio::piped()),
    );
    let addr = common::announced_address(&mut scheduler.child);
    let server = |rank: &str| {
        Role::spawn(
            Command::new(env!("CARGO_BIN_EXE_ferrops"))
                .args(["server", "--scheduler", &addr])
                .args(job)
                .env("FERROPS_RANK", rank)
                .env("FERROPS_METRICS_ADDR", "127.0.0.1:0"),
        )
    };
    let (head, mut tail) = (server("0"), server("1"));
    let scheduler_metrics = scheduler.metrics_addr();
    let head_metrics = head.metrics_addr();
    let mut cluster = ClusterConfig::new(addr.parse().unwrap(), 2, 1);
    cluster.key = ClusterKey::Secret(Secret::new(SECRET).unwrap());
    cluster.replication = 2;
    let worker = Worker::connect(&WorkerConfig { cluster }).expect("worker connects");
    let table = worker.declare_table(TableSpec::new("t", 1)).unwrap();
    // Key 1 lies in range 0, whose chain is [0, 1]: every push is forwarded once.
    for _ in 0..10 {
        worker.push(table, &[1], &[1.0]).unwrap();
    }
    let lag = "ferrops_replication_seconds_count";
    assert_eq!(
        value(&scrape(head_metrics), lag),
        10.0,
        "one lag per forwarded push"
    );
    assert_eq!(
        value(&scrape(scheduler_metrics), "ferrops_failovers_total"),
        0.0
    );
    tail.child.kill().unwrap();
    let _ = tail.child.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    while value(&scrape(scheduler_metrics), "ferrops_failovers_total") < 1.0 {
        assert!(Instant::now() < deadline, "the failover was never counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // With its chain down to the head alone, a push is no longer forwarded.
    worker.push(table, &[1], &[1.0]).unwrap();
    assert_eq!(worker.pull(table, &[1]).unwrap(), vec![11.0]);
    assert_eq!(value(&scrape(head_metrics), lag), 10.0);
    worker.finish().unwrap();
}
