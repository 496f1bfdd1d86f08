//! `ferrops bench sim`: a deterministic discrete-event simulation of data-parallel training on
//! the parameter server, to predict time per iteration for more workers and servers than this
//! machine has, from costs measured on it.
//!
//! The model follows what one iteration of a worker does in `train l1lr` or `logreg`: pull the
//! weights (its share of every server's range), compute, push the update, clock. A pull at
//! iteration t waits until every worker has finished iteration t − τ − 1 (bounded delay, as the
//! servers enforce it); the waiting is the idle time. Resources, each first come first served
//! in the order requests reach it:
//!
//! - every node's link sends and receives at the wire rate, each direction on its own;
//! - every server's thread handles values at the apply rate, one request at a time: it applies
//!   a push's values, and reads a pull's before its link sends them;
//! - every request costs the per-request latency once (half on the way, half back).
//!
//! A worker's compute takes the compute time (divided by W in strong scaling, where the data
//! is split; whole in weak scaling, where each worker brings its own), times the straggler
//! factor k in a fraction p of (worker, iteration) pairs, drawn from a seeded generator: the
//! same inputs always give the same prediction. With `--measure` the wire rate, the latency and
//! the apply rate are measured on this machine first (raw TCP stream, busy-polling TCP
//! ping-pong, the `sum` kernel out of cache).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use crate::synth::Rng;

/// What the simulation is fed: rates and times measured on a machine, and the work.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Costs {
    /// Bytes per second one link moves in one direction.
    pub wire_bytes_per_s: f64,
    /// Bytes of values per second a server's thread handles: applies a push's, reads a pull's.
    /// The `sum` kernel's rate is its floor; a push-pull run's own server time calibrates it.
    pub apply_bytes_per_s: f64,
    /// Seconds of fixed cost per request (a round trip's overhead).
    pub latency_s: f64,
    /// Seconds one iteration's computation takes on one worker holding all the data.
    pub compute_s: f64,
    /// Bytes each worker pulls and pushes per iteration (spread evenly over the servers).
    pub pull_bytes: f64,
    pub push_bytes: f64,
    /// A (worker, iteration) is a straggler with this probability...
    pub straggler_p: f64,
    /// ...and then computes this many times slower.
    pub straggler_k: f64,
}

/// The job simulated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Shape {
    pub workers: usize,
    pub servers: usize,
    pub tau: u32,
    pub iters: u32,
    /// Weak scaling: every worker computes the whole `compute_s` (its own data); otherwise the
    /// work is split W ways.
    pub weak: bool,
}

/// What the simulation predicts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Prediction {
    pub workers: usize,
    pub servers: usize,
    pub tau: u32,
    /// Seconds from the first pull to the last acknowledged push, over the iterations.
    pub seconds_per_iter: f64,
    /// Time workers spent waiting for slower workers (bounded delay), over workers × makespan.
    pub idle_fraction: f64,
}

/// One event: worker `w` is ready to start iteration `t` (`Ready`) or starts pushing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Ready,
    Push,
}

/// Earliest-first queue of (time in ns, tie-breaker, step, worker, iteration).
type Queue = BinaryHeap<Reverse<(u64, u64, Step, usize, u32)>>;

/// Runs the simulation.
pub fn simulate(c: &Costs, s: &Shape, seed: u64) -> Prediction {
    let (w_n, s_n) = (s.workers.max(1), s.servers.max(1));
    let ns = |secs: f64| (secs.max(0.0) * 1e9).round() as u64;
    let per_server = |bytes: f64| bytes / s_n as f64 / c.wire_bytes_per_s;
    let compute = if s.weak {
        c.compute_s
    } else {
        c.compute_s / w_n as f64
    };
    let mut rng = Rng::new(seed);
    let mut queue = Queue::new();
    let mut seq = 0u64;
    let mut push = |q: &mut Queue, at: u64, step: Step, w: usize, t: u32| {
        seq += 1;
        q.push(Reverse((at, seq, step, w, t)));
    };
    // Free-at times (ns) of each server's send side, receive side and apply thread.
    let (mut srv_tx, mut srv_rx, mut srv_cpu) = (vec![0u64; s_n], vec![0u64; s_n], vec![0u64; s_n]);
    // Iterations each worker has finished, and the workers parked on a bounded-delay wait.
    let mut finished = vec![0u32; w_n];
    let mut parked: Vec<(usize, u32, u64)> = Vec::new();
    let (mut idle, mut end) = (0u64, 0u64);
    for w in 0..w_n {
        push(&mut queue, 0, Step::Ready, w, 0);
    }
    while let Some(Reverse((now, _, step, w, t))) = queue.pop() {
        match step {
            Step::Ready if t >= s.iters => end = end.max(now),
            Step::Ready => {
                // Iteration t (from 0) may pull once everyone finished t − τ iterations.
                let needed = t.saturating_sub(s.tau);
                if finished.iter().any(|&f| f < needed) {
                    parked.push((w, t, now));
                    continue;
                }
                // The pull: each server's thread reads its share of the values, then its link
                // sends them, each when free.
                let share = ns(per_server(c.pull_bytes));
                let read = ns(c.pull_bytes / s_n as f64 / c.apply_bytes_per_s);
                let mut done = now + ns(c.latency_s);
                for srv in 0..s_n {
                    let arrive = now + ns(c.latency_s / 2.0);
                    srv_cpu[srv] = srv_cpu[srv].max(arrive) + read;
                    srv_tx[srv] = srv_tx[srv].max(srv_cpu[srv]) + share;
                    done = done.max(srv_tx[srv] + ns(c.latency_s / 2.0));
                }
                // The worker's own link takes every share in turn.
                done = done.max(now + ns(c.latency_s + c.pull_bytes / c.wire_bytes_per_s));
                let slow = rng.unit() < c.straggler_p;
                let factor = if slow { c.straggler_k } else { 1.0 };
                push(&mut queue, done + ns(compute * factor), Step::Push, w, t);
            }
            Step::Push => {
                // The worker's link sends the parts one after the other; each server receives
                // and then applies its part when free; the push is done at the last ack.
                let part = c.push_bytes / s_n as f64;
                let mut sent = now + ns(c.latency_s / 2.0);
                let mut acked = now;
                for srv in 0..s_n {
                    sent += ns(part / c.wire_bytes_per_s);
                    let rx_start = srv_rx[srv].max(sent - ns(part / c.wire_bytes_per_s));
                    srv_rx[srv] = rx_start + ns(part / c.wire_bytes_per_s);
                    let apply_start = srv_cpu[srv].max(srv_rx[srv]);
                    srv_cpu[srv] = apply_start + ns(part / c.apply_bytes_per_s);
                    acked = acked.max(srv_cpu[srv] + ns(c.latency_s / 2.0));
                }
                finished[w] = t + 1;
                end = end.max(acked);
                push(&mut queue, acked, Step::Ready, w, t + 1);
                // Release whoever this finish unblocks.
                let ready = |&(_, pt, _): &(usize, u32, u64)| {
                    let needed = pt.saturating_sub(s.tau);
                    finished.iter().all(|&f| f >= needed)
                };
                let (go, stay): (Vec<_>, Vec<_>) = parked.drain(..).partition(ready);
                parked = stay;
                for (pw, pt, since) in go {
                    idle += acked.saturating_sub(since);
                    push(&mut queue, acked, Step::Ready, pw, pt);
                }
            }
        }
    }
    let makespan = end.max(1) as f64 / 1e9;
    Prediction {
        workers: w_n,
        servers: s_n,
        tau: s.tau,
        seconds_per_iter: makespan / f64::from(s.iters.max(1)),
        idle_fraction: idle as f64 / 1e9 / (w_n as f64 * makespan),
    }
}

/// What `ferrops bench sim` runs: the costs (measured first with `measure`), and every
/// combination of workers, servers and τ to predict.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub costs: Costs,
    pub workers: Vec<usize>,
    pub servers: Vec<usize>,
    pub taus: Vec<u32>,
    pub iters: u32,
    pub weak: bool,
    pub measure: bool,
    pub seed: u64,
    pub json: bool,
}

/// Measures the wire rate (a raw TCP stream of 64 MB), the per-request latency (busy-polling
/// TCP ping-pong of 64 bytes) and the apply rate (the `sum` kernel out of cache) here.
pub fn measure(c: &mut Costs) -> anyhow::Result<()> {
    use super::floor::{tcp_ping_pong, tcp_stream, Wait};
    c.wire_bytes_per_s = tcp_stream(64 << 20, 1 << 20)?.gb_per_s * 1e9;
    c.latency_s = tcp_ping_pong(64, 64, 2000, 200, Wait::Spin)?.p50_us * 1e-6;
    let report = ferrops_kernels::bench::run(&ferrops_kernels::bench::BenchOptions::new(1 << 24));
    let sum = report
        .results
        .iter()
        .find(|k| k.kernel == "sum" && k.size.name() == "out_of_cache")
        .ok_or_else(|| anyhow::anyhow!("the kernel benchmark measured no out-of-cache sum"))?;
    c.apply_bytes_per_s = sum.gelem_per_s * 1e9 * 4.0;
    Ok(())
}

/// Predicts every combination and prints a table (and one JSON object last with `json`).
pub fn run(o: &SimOptions) -> anyhow::Result<()> {
    let mut costs = o.costs;
    if o.measure {
        measure(&mut costs)?;
    }
    println!(
        "costs: wire {:.2} GB/s, apply {:.2} GB/s, latency {:.1} µs, compute {:.1} ms ({} scaling), \
         pull {:.2} MB, push {:.2} MB, stragglers {:.0}% at {}×",
        costs.wire_bytes_per_s / 1e9,
        costs.apply_bytes_per_s / 1e9,
        costs.latency_s * 1e6,
        costs.compute_s * 1e3,
        if o.weak { "weak" } else { "strong" },
        costs.pull_bytes / 1e6,
        costs.push_bytes / 1e6,
        costs.straggler_p * 100.0,
        costs.straggler_k
    );
    println!(
        "{:>8} {:>8} {:>4} {:>14} {:>8}",
        "workers", "servers", "τ", "s/iteration", "idle"
    );
    let mut all = Vec::new();
    for &tau in &o.taus {
        for &servers in &o.servers {
            for &workers in &o.workers {
                let shape = Shape {
                    workers,
                    servers,
                    tau,
                    iters: o.iters,
                    weak: o.weak,
                };
                let p = simulate(&costs, &shape, o.seed);
                println!(
                    "{:>8} {:>8} {:>4} {:>14.6} {:>7.1}%",
                    p.workers,
                    p.servers,
                    p.tau,
                    p.seconds_per_iter,
                    p.idle_fraction * 100.0
                );
                all.push(p);
            }
        }
    }
    if o.json {
        let report = serde_json::json!({"bench": "sim", "costs": costs, "weak": o.weak,
            "iters": o.iters, "predictions": all});
        println!("{report}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs() -> Costs {
        Costs {
            wire_bytes_per_s: 1e9,
            apply_bytes_per_s: 4e9,
            latency_s: 20e-6,
            compute_s: 0.1,
            pull_bytes: 4e6,
            push_bytes: 4e6,
            straggler_p: 0.0,
            straggler_k: 1.0,
        }
    }

    fn shape(workers: usize, servers: usize, tau: u32) -> Shape {
        Shape {
            workers,
            servers,
            tau,
            iters: 20,
            weak: false,
        }
    }

    #[test]
    fn one_worker_one_server_adds_up_by_hand() {
        let c = costs();
        let p = simulate(&c, &shape(1, 1, 0), 1);
        // pull: latency + 4 MB read at 4 GB/s + 4 MB at 1 GB/s on the wire; compute 0.1 s;
        // push: latency + 4 MB on the wire + 4 MB applied at 4 GB/s.
        let by_hand = (20e-6 + 1e-3 + 4e-3) + 0.1 + (20e-6 + 4e-3 + 1e-3);
        assert!(
            (p.seconds_per_iter - by_hand).abs() < 1e-6,
            "{p:?} vs {by_hand}"
        );
        assert_eq!(p.idle_fraction, 0.0);
    }

    #[test]
    fn strong_scaling_saturates_on_one_server_and_servers_lift_it() {
        let c = costs();
        let t = |w, s| simulate(&c, &shape(w, s, 0), 1).seconds_per_iter;
        assert!(t(2, 1) < t(1, 1) * 0.6, "two workers halve the compute");
        // 64 workers on one server: each direction of its link carries 64 × 4 MB per
        // iteration (pulls out, pushes in, at the same time).
        let one = t(64, 1);
        assert!(
            one > 64.0 * 4e-3 * 0.95 && one < 64.0 * 8e-3,
            "one server's link bounds it"
        );
        assert!(
            t(64, 16) < t(64, 1) / 8.0,
            "sixteen servers share that traffic"
        );
    }

    #[test]
    fn stragglers_cost_idle_time_that_delay_hides() {
        let c = Costs {
            straggler_p: 0.2,
            straggler_k: 5.0,
            pull_bytes: 1e4,
            push_bytes: 1e4,
            ..costs()
        };
        let run = |tau| {
            let mut s = shape(8, 4, tau);
            s.weak = true;
            s.iters = 200;
            simulate(&c, &s, 7)
        };
        let (sync, loose) = (run(0), run(16));
        assert!(sync.idle_fraction > 0.3, "{sync:?}");
        assert!(
            loose.idle_fraction < sync.idle_fraction / 4.0,
            "{loose:?} vs {sync:?}"
        );
        assert!(loose.seconds_per_iter < sync.seconds_per_iter * 0.8);
        assert_eq!(run(0), sync, "deterministic");
    }
}
