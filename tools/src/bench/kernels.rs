//! `ferrops bench kernels`: prints what `ferrops_kernels::bench` measured — the update kernels
//! on arrays far larger than the last-level cache and on in-cache arrays, against a STREAM
//! triad floor. A human-readable table goes to stdout; with `--json` the last line of stdout is
//! one JSON object (`{"bench":"kernels", ...}`).

use anyhow::{bail, Result};
use ferrops_kernels::bench::{self, BenchOptions, BenchReport, Size};
use serde_json::json;

/// Runs the kernel benchmark over `elements` f32 per array (the CLI default is 64M).
pub fn run(elements: usize, json: bool) -> Result<()> {
    if elements == 0 {
        bail!("--elements must be at least 1");
    }
    let report = bench::run(&BenchOptions::new(elements));
    print!("{}", table(&report));
    if json {
        println!("{}", to_json(&report));
    }
    Ok(())
}

/// The human-readable table.
pub fn table(r: &BenchReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "kernels on {} ({} elements out of cache, {} in cache); triad {:.1} GB/s out of cache, {:.1} GB/s in cache",
        r.isa, r.elements, r.in_cache_elements, r.triad_gb_per_s, r.triad_in_cache_gb_per_s
    );
    let _ = writeln!(
        s,
        "{:<16} {:<13} {:>6} {:>9} {:>9} {:>9} {:>10}",
        "kernel", "size", "B/elem", "GB/s", "Gelem/s", "of_triad", "vs scalar"
    );
    for k in &r.results {
        let speedup = k
            .speedup_vs_scalar
            .map(|x| format!("{x:.1}x"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<16} {:<13} {:>6.1} {:>9.2} {:>9.3} {:>9.2} {:>10}",
            k.kernel,
            k.size.name(),
            k.bytes_per_element,
            k.gb_per_s,
            k.gelem_per_s,
            k.of_triad,
            speedup
        );
    }
    s
}

/// The one-line JSON form.
pub fn to_json(r: &BenchReport) -> String {
    let results: Vec<_> = r
        .results
        .iter()
        .map(|k| {
            let mut v = json!({
                "kernel": k.kernel,
                "isa": k.isa.name(),
                "size": k.size.name(),
                "elements": k.elements,
                "bytes_per_element": k.bytes_per_element,
                "gb_per_s": k.gb_per_s,
                "gelem_per_s": k.gelem_per_s,
                "of_triad": k.of_triad,
            });
            if let (Size::InCache, Some(x)) = (k.size, k.speedup_vs_scalar) {
                v["speedup_vs_scalar"] = json!(x);
            }
            v
        })
        .collect();
    json!({
        "bench": "kernels",
        "isa": r.isa.name(),
        "elements": r.elements,
        "in_cache_elements": r.in_cache_elements,
        "triad_gb_per_s": r.triad_gb_per_s,
        "triad_in_cache_gb_per_s": r.triad_in_cache_gb_per_s,
        "results": results,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_one_line_with_the_contract_fields() {
        let opts = BenchOptions::smoke(2048, std::time::Duration::from_micros(100));
        let r = bench::run(&opts);
        let line = to_json(&r);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["bench"], "kernels");
        assert_eq!(v["elements"], 2048);
        assert!(v["triad_gb_per_s"].as_f64().unwrap() > 0.0);
        let first = &v["results"][0];
        for key in [
            "kernel",
            "isa",
            "size",
            "gb_per_s",
            "gelem_per_s",
            "of_triad",
        ] {
            assert!(!first[key].is_null(), "{key}");
        }
        assert!(table(&r).lines().count() > r.results.len());
    }
}
