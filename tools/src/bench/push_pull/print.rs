//! The benchmark's report as a person reads it: our latencies, what went over the wire, the
//! servers' memory, and every floor with our ratio to it.

use super::{LatencyStats, Report};

pub(super) fn print_human(r: &Report) {
    println!(
        "push-pull over {}: {} servers, {} workers, {} keys × {} f32, {} iterations",
        r.transport, r.servers, r.workers, r.keys, r.val_len, r.iters
    );
    let row = |name: &str, s: &LatencyStats| {
        println!(
            "  {name:<18} p50 {:>10.1} µs   p99 {:>10.1} µs   min {:>10.1} µs",
            s.p50_us, s.p99_us, s.min_us
        )
    };
    row("push", &r.push);
    row("pull", &r.pull);
    println!(
        "  wire  sent {:.1} MB, received {:.1} MB; value bytes copied {}{}",
        r.bytes_sent as f64 / 1e6,
        r.bytes_received as f64 / 1e6,
        r.value_bytes_copied,
        if r.fresh_keys {
            "; keys sent and resolved anew every request"
        } else {
            ""
        }
    );
    if r.bulk_frames_landed + r.bulk_frames_rendezvous > 0 {
        println!(
            "  bulk frames  {} landed in regions advertised ahead, {} after a rendezvous",
            r.bulk_frames_landed, r.bulk_frames_rendezvous
        );
    }
    if let Some(m) = &r.server_memory {
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        println!(
            "  server memory  resident {:.1} MiB = {:.2}× the raw {:.1} MiB of keys and values \
             (values {:.1} MiB, state {:.1} MiB, key map {:.1} MiB, resolution cache {:.1} MiB)",
            mib(m.resident_bytes),
            m.resident_over_raw,
            mib(m.raw_bytes),
            mib(m.values_bytes),
            mib(m.state_bytes),
            mib(m.key_map_bytes),
            mib(m.resolution_cache_bytes)
        );
    }
    if let Some(f) = &r.floor {
        row("tcp↔push blocking", &f.push_round_trip);
        row("tcp↔pull blocking", &f.pull_round_trip);
        row("tcp↔push spinning", &f.push_round_trip_spin);
        row("tcp↔pull spinning", &f.pull_round_trip_spin);
        row("tcp stream push", &f.stream_runs);
        row("tcp stream pull", &f.pull_stream_runs);
        row("tcp whole push", &f.stream_whole_runs);
        row("tcp whole pull", &f.pull_stream_whole_runs);
        println!(
            "  tcp stream {:.2} GB/s (median run); p50 over the streams of the same bytes: \
             push {:.2}×, pull {:.2}×",
            f.stream.gb_per_s, f.push_stream_ratio, f.pull_stream_ratio
        );
        println!(
            "  p50 over whole-buffer streams of the same bytes: push {:.2}×, pull {:.2}×",
            f.push_stream_whole_ratio, f.pull_stream_whole_ratio
        );
        println!(
            "  ratio to raw TCP (p50): push {:.2}× spinning, {:.2}× blocking; \
             pull {:.2}× spinning, {:.2}× blocking",
            f.push_p50_ratio_spin, f.push_p50_ratio, f.pull_p50_ratio_spin, f.pull_p50_ratio
        );
        if let Some(s) = &f.shm {
            row("shm ring push", &s.push_round_trip);
            row("shm ring pull", &s.pull_round_trip);
            row("memcpy values", &s.memcpy);
            println!(
                "  ratio to raw shm rings of {} MiB (p50): push {:.2}×, pull {:.2}×; \
                 to a memcpy of the values: push {:.2}×, pull {:.2}×",
                s.ring_bytes >> 20,
                s.push_p50_ratio,
                s.pull_p50_ratio,
                s.push_memcpy_ratio,
                s.pull_memcpy_ratio
            );
        }
        if let Some(p) = &f.perftest {
            let runs = |r: &[f64]| {
                r.iter()
                    .map(|v| format!("{v:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "  perftest on {} (fastest of {} runs): ib_send_lat round trip {:.1} µs ({}), \
                 ib_write_lat round trip {:.1} µs ({})",
                p.device,
                p.send_runs_us.len(),
                p.send_round_trip_us,
                runs(&p.send_runs_us),
                p.write_round_trip_us,
                runs(&p.write_runs_us)
            );
            println!(
                "  ratio to perftest {} {:.1} µs (p50): push {:.2}×, pull {:.2}×",
                p.floor, p.floor_us, p.push_p50_ratio, p.pull_p50_ratio
            );
        }
    }
}
