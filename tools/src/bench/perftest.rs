//! The latency floor of the device: perftest's `ib_send_lat` / `ib_write_lat`, server and client
//! on the same device, for the benchmark's `--floor` on RDMA.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Which perftest latency tool to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerftestTool {
    /// `ib_send_lat`: SEND/RECV ping-pong.
    SendLat,
    /// `ib_write_lat`: RDMA WRITE ping-pong.
    WriteLat,
}

impl PerftestTool {
    /// The executable's name.
    pub fn program(self) -> &'static str {
        match self {
            PerftestTool::SendLat => "ib_send_lat",
            PerftestTool::WriteLat => "ib_write_lat",
        }
    }
}

/// What perftest reported for one message size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub bytes: u64,
    pub iterations: u64,
    pub min_us: f64,
    pub typical_us: f64,
    pub avg_us: f64,
}

/// How many times a perftest run whose figures are unusable is repeated before giving up.
const ATTEMPTS: usize = 3;

/// Runs `tool` as server and client on `device` (perftest exchanges the queue pair details over
/// TCP to `addr`, the device's IPv4 address, on `port`) with `size`-byte messages and returns the
/// client's figures. Errors are words for the benchmark report (perftest missing, output not
/// understood, ...).
///
/// perftest converts cycles to microseconds with a CPU frequency it estimates at start-up; when
/// that estimate fails (it does now and then under emulation) it prints `inf` for every figure.
/// Such a run is repeated, up to [`ATTEMPTS`] times in all.
pub fn run_perftest(
    tool: PerftestTool,
    device: &str,
    addr: Ipv4Addr,
    port: u16,
    size: usize,
    iterations: u32,
) -> Result<Latency, String> {
    let server_args = [
        "-d".to_string(),
        device.to_string(),
        "-p".to_string(),
        port.to_string(),
        "-s".to_string(),
        size.to_string(),
        "-n".to_string(),
        iterations.to_string(),
    ];
    let mut client_args = server_args.to_vec();
    client_args.push(addr.to_string());
    let mut unusable = String::new();
    for attempt in 1..=ATTEMPTS {
        let text = run_once(tool.program(), &server_args, &client_args)?;
        match usable_latency(&text) {
            Some(lat) => return Ok(lat),
            None => {
                tracing::warn!(
                    "{} printed no usable figures (attempt {attempt} of {ATTEMPTS})",
                    tool.program()
                );
                unusable = text;
            }
        }
    }
    Err(format!(
        "cannot read {} output ({ATTEMPTS} attempts), the last was:\n{unusable}",
        tool.program()
    ))
}

/// One server + client run of perftest's `program`; returns the client's output (stdout, then
/// stderr).
fn run_once(
    program: &str,
    server_args: &[String],
    client_args: &[String],
) -> Result<String, String> {
    let mut server = Command::new(program)
        .args(server_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program} (is perftest installed?): {e}"))?;
    // The server needs a moment to listen; the client retries a few times.
    let mut last = String::new();
    let mut client_out = None;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        let out = Command::new(program)
            .args(client_args)
            .output()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        if out.status.success() {
            client_out = Some(out);
            break;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        if matches!(server.try_wait(), Ok(Some(_))) {
            break;
        }
    }
    let Some(out) = client_out else {
        let _ = server.kill();
        let _ = server.wait();
        return Err(format!("{program} client failed: {}", last.trim()));
    };
    let _ = server.wait();
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// The result line of `output`, if it is there and its figures are finite and positive.
pub fn usable_latency(output: &str) -> Option<Latency> {
    parse_latency(output).filter(|lat| {
        [lat.min_us, lat.typical_us, lat.avg_us]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
    })
}

/// Reads the result line of perftest's latency table:
/// `#bytes #iterations t_min t_max t_typical t_avg t_stdev 99% 99.9%` (microseconds).
pub fn parse_latency(output: &str) -> Option<Latency> {
    output.lines().find_map(|line| {
        let nums: Vec<f64> = line
            .split_whitespace()
            .map(|w| w.parse::<f64>())
            .collect::<Result<_, _>>()
            .ok()?;
        if nums.len() < 6 {
            return None;
        }
        Some(Latency {
            bytes: nums[0] as u64,
            iterations: nums[1] as u64,
            min_us: nums[2],
            typical_us: nums[4],
            avg_us: nums[5],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_perftest_table() {
        let out = "\
---------------------------------------------------------------------------------------
 #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] 
 8       1000          11.52          96.30        13.06               14.11        4.07            30.22                   96.30   
---------------------------------------------------------------------------------------
";
        let lat = parse_latency(out).unwrap();
        assert_eq!(lat.bytes, 8);
        assert_eq!(lat.iterations, 1000);
        assert_eq!(lat.typical_us, 13.06);
        assert_eq!(lat.avg_us, 14.11);
        assert!(parse_latency("no table here\n1 2\n").is_none());
        assert!(usable_latency(out).is_some());
    }

    #[test]
    fn a_table_of_inf_is_not_usable() {
        // What ib_send_lat printed in a guest whose CPU frequency estimate failed.
        let out = "\
 #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] 
 4000080 20          inf            inf          inf      \t       inf         \t-nan   \t\tinf     \t\tinf    
";
        let lat = parse_latency(out).expect("the line still parses");
        assert_eq!(lat.bytes, 4_000_080);
        assert!(usable_latency(out).is_none());
    }
}
