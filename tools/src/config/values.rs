//! Parsers of setting values, shared by every source: counts, addresses (resolving host names),
//! secrets, and the rule that an empty environment variable counts as unset.

use std::net::{SocketAddr, ToSocketAddrs};

use ferrops_net::auth::Secret;

use super::EnvMap;

/// An environment variable's value; empty counts as unset (launch scripts often export empties).
pub(super) fn env_value<'a>(env: &'a EnvMap, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

pub(super) fn parse_positive(text: &str) -> Result<u64, String> {
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| "not a whole number".to_string())?;
    if n == 0 {
        return Err("must be at least 1".to_string());
    }
    Ok(n)
}

/// A busy-poll time in microseconds: 0 (sleep at once) to 1,000,000 (a second of spinning per
/// wait is already a core given away; more is a typo).
pub(super) fn parse_busy_poll_us(text: &str) -> Result<u64, String> {
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| "not a whole number of microseconds".to_string())?;
    if n > 1_000_000 {
        return Err("must be at most 1000000 (one second)".to_string());
    }
    Ok(n)
}

/// A rank: a whole number from 0.
pub(super) fn parse_rank(text: &str) -> Result<u32, String> {
    text.trim()
        .parse()
        .map_err(|_| "not a whole number from 0 to 4294967295".to_string())
}

pub(super) fn parse_count(text: &str) -> Result<usize, String> {
    let n = parse_positive(text)?;
    usize::try_from(n).map_err(|_| "too large".to_string())
}

/// `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT` (resolved now; an IPv4 address is preferred, as
/// `localhost` often resolves to `::1` first while services listen on 127.0.0.1).
pub(super) fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT".to_string())?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err("expected HOST:PORT".to_string());
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host `{host}`: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("host `{host}` has no address"))
}

pub(super) fn parse_secret(text: &str) -> Result<Secret, String> {
    Secret::new(text).map_err(|_| "must not be empty".to_string())
}

pub(super) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

/// Reads the cluster secret from the file at `path`, refusing a file that others can read or
/// write (as ssh refuses a private key): the secret is the job's only protection.
pub(super) fn read_secret_file(path: &str) -> Result<Secret, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{path} has mode {mode:03o}: others could read the cluster secret; \
             `chmod 600 {path}` first"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Secret::new(&text).map_err(|_| format!("{path} holds no secret (it is empty)"))
}
