//! Bounded delay and eventual consistency, observed with real sockets: a fast worker is held
//! back exactly when it runs more than τ clocks ahead, never under eventual, and a worker that
//! dies stops holding anyone back.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferrops_engine::{Consistency, TableSpec, Worker};

/// How long a pull that must wait is watched (it would answer in well under a millisecond).
const BLOCKED_FOR: Duration = Duration::from_millis(300);
/// How long a pull that may be answered gets, generous for a loaded machine.
const PROMPT_WITHIN: Duration = Duration::from_secs(5);

/// Whether a pull issued now completes within `window`.
fn pull_completes_within(
    w: &Worker,
    t: ferrops_engine::TableId,
    window: Duration,
) -> (bool, ferrops_engine::Ticket) {
    let ticket = w.pull_async(t, &[42]).unwrap();
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        if w.is_done(&ticket).unwrap() {
            return (true, ticket);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (false, ticket)
}

#[test]
fn bounded_delay_blocks_three_clocks_ahead_and_eventual_never_does() {
    let job = common::start(1, 2);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Arc::new(std::sync::Mutex::new(go_rx));
    let go_tx = std::sync::Arc::new(std::sync::Mutex::new(go_tx));
    let results = job.run_workers(2, move |w| {
        let bounded = w
            .declare_table(TableSpec::new("tau2", 1).consistency(Consistency::BoundedDelay(2)))
            .unwrap();
        let eventual = w
            .declare_table(TableSpec::new("eventual", 1).consistency(Consistency::Eventual))
            .unwrap();
        w.barrier().unwrap();
        if w.rank() == 1 {
            // The slow worker: stays in clock 0 until the fast one has made its observations.
            go_rx.lock().unwrap().recv().unwrap();
            w.clock().unwrap();
            w.finish().unwrap();
            return Vec::new();
        }
        let mut observed = Vec::new();
        for ahead in 1..=3u32 {
            w.clock().unwrap();
            let (eventual_ok, t1) = pull_completes_within(&w, eventual, PROMPT_WITHIN);
            w.wait(t1).unwrap();
            // Within τ a pull is answered; 3 clocks ahead it must still wait after 300 ms.
            let window = if ahead < 3 {
                PROMPT_WITHIN
            } else {
                BLOCKED_FOR
            };
            let (bounded_ok, t2) = pull_completes_within(&w, bounded, window);
            observed.push((ahead, eventual_ok, bounded_ok));
            if !bounded_ok {
                go_tx.lock().unwrap().send(()).unwrap();
                let released = Instant::now();
                w.wait(t2).unwrap();
                observed.push((99, true, released.elapsed() < Duration::from_secs(10)));
            } else {
                w.wait(t2).unwrap();
            }
        }
        w.finish().unwrap();
        observed
    });
    // Threads get their ranks in the order they register: find the fast worker's observations.
    let observed = results
        .into_iter()
        .find(|r| !r.is_empty())
        .unwrap_or_default();
    assert_eq!(
        observed,
        vec![
            (1, true, true),
            (2, true, true),
            (3, true, false),
            (99, true, true)
        ],
        "(clocks ahead, eventual pull prompt, τ=2 pull prompt)"
    );
    job.join();
}

/// A worker that dies while the job runs (its connection drops with no `Done`) leaves it: the
/// sequential pull of the worker waiting for its clock is answered (the dead one no longer
/// counts), and once the survivor is done the job ends failing, counting the lost worker.
#[test]
fn a_dead_worker_stops_counting_and_the_job_fails_at_its_end() {
    let job = common::start(1, 2);
    let results = job.run_workers(2, |w| {
        let t = w
            .declare_table(TableSpec::new("bsp", 1).consistency(Consistency::Sequential))
            .unwrap();
        w.barrier().unwrap();
        if w.rank() == 1 {
            std::thread::sleep(Duration::from_millis(300));
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let _w = w;
                panic!("worker 1 dies");
            }));
            return (1, outcome.is_err().then(String::new));
        }
        w.clock().unwrap();
        // Waits for worker 1's clock until worker 1 no longer counts.
        let pulled = w.pull(t, &[1]).err().map(|e| e.to_string());
        let _ = w.finish();
        (0, pulled)
    });
    // Ranks follow registration, not thread order: find each by the rank it reported.
    let by_rank = |rank| {
        results
            .iter()
            .find(|(r, _)| *r == rank)
            .map(|(_, said)| said.clone())
    };
    let said = "1 workers done, 1 lost";
    assert_eq!(by_rank(1), Some(Some(String::new())), "worker 1 died");
    assert_eq!(by_rank(0), Some(None), "worker 0's pull is answered");
    let scheduler = job.scheduler.join().unwrap().expect_err("the job failed");
    assert!(scheduler.to_string().contains(said), "{scheduler}");
    for s in job.servers {
        let server = s.join().unwrap().expect_err("the job failed");
        assert!(server.to_string().contains(said), "{server}");
    }
}
