//! Key caching per table, and a server whose key cache lost a list the worker still thinks it
//! holds: the signature is refused (`KeysUnknown`), never applied to a wrong list; blocking
//! calls recover by sending the keys to that server only, asynchronous ones report it, and no
//! push is applied twice.

mod common;

use common::Job;
use ferrops_engine::{EngineError, KeyList, TableSpec, Worker};

/// A job of one worker and one server per entry of `caps` (each server's key cache cap).
fn start(caps: &[Option<u64>]) -> Job {
    let caps = caps.to_vec();
    common::start_configured(
        caps.len(),
        1,
        |_| {},
        move |i, cfg| cfg.key_cache_cap_keys = caps[i],
    )
}

/// `n` keys spread over the whole key space (both halves, so both of two servers get some),
/// offset so that different lists do not share keys.
fn list(n: u64, offset: u64) -> Vec<u64> {
    let step = u64::MAX / n;
    (0..n).map(|i| i * step + offset).collect()
}

#[test]
fn a_lost_list_is_resent_to_that_server_only_and_applied_once() {
    // Server 0 holds at most 1500 keys of lists per connection; the worker assumes 16M. Each
    // list below puts 500 keys on each server.
    let job = start(&[Some(1500), None]);
    let results = job.run_workers(1, |w: Worker| {
        let t = w.declare_table(TableSpec::new("t", 1)).unwrap();
        let (a, b, c) = (list(1000, 1), list(1000, 2), list(1000, 3));
        let ones = vec![1.0f32; 1000];
        // Server 0 caches a, b, c (1500 keys), then d evicts a there; the worker keeps all.
        for keys in [&a, &b, &c] {
            w.push(t, keys, &ones).unwrap();
        }
        let d = list(1000, 4);
        w.push(t, &d, &ones).unwrap();
        // `a` by signature: server 1 applies it, server 0 refuses; the blocking push resends
        // the keys to server 0 alone.
        w.push(t, &a, &ones).unwrap();
        let stats_after_blocking = w.reducer_stats();
        // An asynchronous push reports the miss instead (after the worker forgot `b`, which
        // server 0 lost when `a` came back), and nothing was applied twice.
        let ticket = w.push_async(t, &b, &ones).unwrap();
        let missed = w.wait(ticket);
        // The other server applied its part of `b`; the capped one's part goes again as a
        // push of its keys alone.
        let capped = match &missed {
            Err(EngineError::KeyListMissed { servers }) if servers.len() == 1 => servers[0],
            other => panic!("the asynchronous push should report one miss, got {other:?}"),
        };
        let routing = w.routing();
        let part: Vec<u64> = b
            .iter()
            .copied()
            .filter(|&k| {
                routing
                    .ranges
                    .iter()
                    .any(|r| r.server == capped && r.contains(k))
            })
            .collect();
        assert!(!part.is_empty() && part.len() < b.len());
        w.push(t, &part, &vec![1.0f32; part.len()]).unwrap();
        let pulled: Vec<Vec<f32>> = [&a, &b, &c, &d]
            .iter()
            .map(|keys| w.pull(t, keys).unwrap())
            .collect();
        w.finish().unwrap();
        (pulled, stats_after_blocking)
    });
    let (pulled, stats) = &results[0];
    for (name, values, expected) in [
        ("a", &pulled[0], 2.0),
        ("b", &pulled[1], 2.0),
        ("c", &pulled[2], 1.0),
        ("d", &pulled[3], 1.0),
    ] {
        assert!(
            values.iter().all(|&v| v == expected),
            "list {name}: expected every value {expected}, got {:?}",
            &values[..4]
        );
    }
    // The lists went by signature where both ends held them.
    assert!(stats.key_cached.sections > 0, "{stats:?}");
    // Every resend went only where the push had not been applied.
    let (_, reports) = job.join();
    let duplicates: u64 = reports.iter().map(|r| r.duplicate_pushes).sum();
    assert_eq!(duplicates, 0);
}

#[test]
fn key_caching_and_packing_are_per_table() {
    let job = start(&[None]);
    let results = job.run_workers(1, |w: Worker| {
        let cached = w.declare_table(TableSpec::new("cached", 1)).unwrap();
        let whole = w
            .declare_table(
                TableSpec::new("whole", 1)
                    .key_caching(false)
                    .key_packing(false),
            )
            .unwrap();
        let keys: Vec<u64> = (0..1000u64).map(|i| i * 3).collect(); // packs well
        let ones = vec![1.0f32; keys.len()];
        let sent = |t| {
            let before = w.metrics().key_bytes_sent;
            for _ in 0..3 {
                w.push(t, &keys, &ones).unwrap();
            }
            w.metrics().key_bytes_sent - before
        };
        let (by_cache, by_whole) = (sent(cached), sent(whole));
        let sums = (
            w.pull(cached, &keys).unwrap(),
            w.pull(whole, &keys).unwrap(),
        );
        w.finish().unwrap();
        (by_cache, by_whole, sums)
    });
    let (by_cache, by_whole, (a, b)) = &results[0];
    // Three pushes: the list travels packed once, then by signature; or raw every time.
    assert_eq!(*by_whole, 3 * 1000 * 8);
    assert!(*by_cache < 1000 * 8, "{by_cache} bytes of keys");
    assert!(a.iter().chain(b).all(|&v| v == 3.0));
    job.join();
}

#[test]
fn a_key_list_goes_by_signature_recovers_a_lost_list_and_is_applied_once() {
    // Server 0 holds at most 1500 keys of lists per connection; each list puts 500 keys on
    // each of the two servers.
    let job = start(&[Some(1500), None]);
    let results = job.run_workers(1, |w: Worker| {
        let t = w.declare_table(TableSpec::new("t", 1)).unwrap();
        let a = KeyList::new(list(1000, 1)).unwrap();
        let ones = vec![1.0f32; 1000];
        w.push_list(t, &a, &ones).unwrap();
        let before = w.metrics().key_bytes_sent;
        w.push_list(t, &a, &ones).unwrap();
        let by_signature = w.metrics().key_bytes_sent - before;
        // Three more lists evict `a` from server 0's cache; the worker still thinks it is
        // there, so the next push of `a` is refused there and resent with its keys.
        for offset in 2..5 {
            w.push(t, &list(1000, offset), &ones).unwrap();
        }
        w.push_list(t, &a, &ones).unwrap();
        let mut out = vec![0.0f32; 1000];
        w.pull_list_into(t, &a, &mut out).unwrap();
        let by_slice = w.pull(t, a.keys()).unwrap();
        // A list cannot be made of unsorted keys, and a wrong number of values is refused.
        let unsorted = KeyList::new(vec![3, 2]).is_err();
        let short = w.push_list(t, &a, &ones[..999]).is_err();
        w.finish().unwrap();
        (by_signature, out, by_slice, unsorted, short)
    });
    let (by_signature, out, by_slice, unsorted, short) = &results[0];
    assert_eq!(*by_signature, 0, "a cached list sends no keys");
    assert!(out.iter().all(|&v| v == 3.0), "{:?}", &out[..4]);
    assert_eq!(out, by_slice);
    assert!(*unsorted && *short);
    let (_, reports) = job.join();
    let duplicates: u64 = reports.iter().map(|r| r.duplicate_pushes).sum();
    assert_eq!(duplicates, 0);
}
