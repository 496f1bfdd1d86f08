//! Slurm host lists (`SLURM_STEP_NODELIST`, `SLURM_JOB_NODELIST`) expanded into host names, as
//! `scontrol show hostnames` does: `node[01-04,10]`, several bracket groups in one list
//! (`a[1-2],b[3,5-6]`) or in one name (`rack[1-2]-n[1-2]`), zero padding kept, plain names.

use thiserror::Error;

/// The most host names one list may expand to (a guard against `n[0-999999999]`).
pub const MAX_HOSTS: usize = 1 << 20;

/// Why a host list could not be expanded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HostListError {
    #[error("the host list is empty")]
    Empty,
    #[error("host list `{list}`: empty host name at position {at}")]
    EmptyName { list: String, at: usize },
    #[error("host list `{list}`: `[` at position {at} is never closed")]
    Unclosed { list: String, at: usize },
    #[error("host list `{list}`: `]` at position {at} has no matching `[`")]
    Unopened { list: String, at: usize },
    #[error("host list `{list}`: nested `[` at position {at}")]
    Nested { list: String, at: usize },
    #[error(
        "host list `{list}`: character {found:?} at position {at} is not allowed in a host name"
    )]
    BadChar {
        list: String,
        at: usize,
        found: char,
    },
    #[error(
        "host list `{list}`: bad range `{range}` (expected N or N-M with digits only and N <= M)"
    )]
    BadRange { list: String, range: String },
    #[error("host list `{list}` expands to more than {MAX_HOSTS} host names")]
    TooMany { list: String },
}

/// One piece of a host name pattern: literal text or the numbers of a bracket group.
enum Part {
    Text(String),
    Numbers(Vec<String>),
}

/// Expands a Slurm host list into its host names, in order.
pub fn expand(list: &str) -> Result<Vec<String>, HostListError> {
    if list.trim().is_empty() {
        return Err(HostListError::Empty);
    }
    let mut hosts = Vec::new();
    for (start, pattern) in split_top_level(list)? {
        if pattern.is_empty() {
            return Err(HostListError::EmptyName {
                list: list.to_string(),
                at: start,
            });
        }
        let parts = parse_pattern(list, start, pattern)?;
        append_product(list, &parts, &mut hosts)?;
    }
    Ok(hosts)
}

/// Splits at commas outside brackets; each piece with its byte offset.
fn split_top_level(list: &str) -> Result<Vec<(usize, &str)>, HostListError> {
    let mut pieces = Vec::new();
    let mut depth_open: Option<usize> = None;
    let mut start = 0;
    for (at, c) in list.char_indices() {
        match c {
            '[' if depth_open.is_some() => {
                return Err(HostListError::Nested {
                    list: list.to_string(),
                    at,
                })
            }
            '[' => depth_open = Some(at),
            ']' if depth_open.is_none() => {
                return Err(HostListError::Unopened {
                    list: list.to_string(),
                    at,
                })
            }
            ']' => depth_open = None,
            ',' if depth_open.is_none() => {
                pieces.push((start, &list[start..at]));
                start = at + 1;
            }
            _ => {}
        }
    }
    if let Some(at) = depth_open {
        return Err(HostListError::Unclosed {
            list: list.to_string(),
            at,
        });
    }
    pieces.push((start, &list[start..]));
    Ok(pieces)
}

/// Parses one comma-free (outside brackets) pattern such as `rack[1-2]-n[01,03]`.
fn parse_pattern(list: &str, offset: usize, pattern: &str) -> Result<Vec<Part>, HostListError> {
    let mut parts = Vec::new();
    let mut rest = pattern;
    let mut at = offset;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let close = inner
                .find(']')
                .expect("brackets were matched when splitting");
            parts.push(Part::Numbers(parse_ranges(list, &inner[..close])?));
            rest = &inner[close + 1..];
            at += close + 2;
        } else {
            let end = rest.find('[').unwrap_or(rest.len());
            let text = &rest[..end];
            if let Some((i, found)) = text.char_indices().find(|(_, c)| !is_name_char(*c)) {
                return Err(HostListError::BadChar {
                    list: list.to_string(),
                    at: at + i,
                    found,
                });
            }
            parts.push(Part::Text(text.to_string()));
            rest = &rest[end..];
            at += end;
        }
    }
    Ok(parts)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// `01-04,10` → `01 02 03 04 10`; a range keeps the width of its lower bound.
fn parse_ranges(list: &str, inside: &str) -> Result<Vec<String>, HostListError> {
    let bad = |range: &str| HostListError::BadRange {
        list: list.to_string(),
        range: range.to_string(),
    };
    let mut numbers = Vec::new();
    for range in inside.split(',') {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(lo) || !digits(hi) {
            return Err(bad(range));
        }
        let (Ok(first), Ok(last)) = (lo.parse::<u64>(), hi.parse::<u64>()) else {
            return Err(bad(range));
        };
        if first > last {
            return Err(bad(range));
        }
        if last - first >= MAX_HOSTS as u64 || numbers.len() + (last - first) as usize > MAX_HOSTS {
            return Err(HostListError::TooMany {
                list: list.to_string(),
            });
        }
        let width = lo.len();
        numbers.extend((first..=last).map(|n| format!("{n:0width$}")));
    }
    Ok(numbers)
}

/// Appends every name of the cartesian product of `parts` to `hosts`.
fn append_product(
    list: &str,
    parts: &[Part],
    hosts: &mut Vec<String>,
) -> Result<(), HostListError> {
    let mut names = vec![String::new()];
    for part in parts {
        names = match part {
            Part::Text(text) => names.into_iter().map(|n| n + text).collect(),
            Part::Numbers(numbers) => {
                if names.len().saturating_mul(numbers.len()) + hosts.len() > MAX_HOSTS {
                    return Err(HostListError::TooMany {
                        list: list.to_string(),
                    });
                }
                names
                    .iter()
                    .flat_map(|n| numbers.iter().map(move |x| format!("{n}{x}")))
                    .collect()
            }
        };
    }
    hosts.extend(names);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &str) -> Vec<String> {
        expand(list).unwrap_or_else(|e| panic!("{list}: {e}"))
    }

    #[test]
    fn plain_names_and_lists_of_them() {
        assert_eq!(hosts("node1"), ["node1"]);
        assert_eq!(hosts("a,b.example.org,c_d"), ["a", "b.example.org", "c_d"]);
        assert_eq!(hosts("gpu-01"), ["gpu-01"]);
    }

    #[test]
    fn ranges_and_single_numbers_keep_zero_padding() {
        assert_eq!(
            hosts("node[01-04,10]"),
            ["node01", "node02", "node03", "node04", "node10"]
        );
        assert_eq!(hosts("n[8-11]"), ["n8", "n9", "n10", "n11"]);
        assert_eq!(hosts("n[098-101]"), ["n098", "n099", "n100", "n101"]);
        assert_eq!(hosts("n[007]"), ["n007"]);
    }

    #[test]
    fn several_bracket_groups_in_a_list_and_in_one_name() {
        assert_eq!(hosts("a[1-2],b[3,5-6]"), ["a1", "a2", "b3", "b5", "b6"]);
        assert_eq!(
            hosts("rack[1-2]-n[1,3]"),
            ["rack1-n1", "rack1-n3", "rack2-n1", "rack2-n3"]
        );
        assert_eq!(hosts("x,n[1-2]y,z"), ["x", "n1y", "n2y", "z"]);
        assert_eq!(hosts("login,c[5-9]")[0], "login");
    }

    #[test]
    fn malformed_lists_say_what_is_wrong() {
        let list = |s: &str| s.to_string();
        assert_eq!(expand(""), Err(HostListError::Empty));
        assert_eq!(
            expand("a,,b"),
            Err(HostListError::EmptyName {
                list: list("a,,b"),
                at: 2
            })
        );
        assert_eq!(
            expand("n[1-3"),
            Err(HostListError::Unclosed {
                list: list("n[1-3"),
                at: 1
            })
        );
        assert_eq!(
            expand("n1-3]"),
            Err(HostListError::Unopened {
                list: list("n1-3]"),
                at: 4
            })
        );
        assert_eq!(
            expand("n[1[2]]"),
            Err(HostListError::Nested {
                list: list("n[1[2]]"),
                at: 3
            })
        );
        for (bad, range) in [
            ("n[3-1]", "3-1"),
            ("n[]", ""),
            ("n[1,]", ""),
            ("n[a-b]", "a-b"),
            ("n[1-]", "1-"),
            ("n[1-10:2]", "1-10:2"),
            ("n[1-2-3]", "1-2-3"),
        ] {
            assert_eq!(
                expand(bad),
                Err(HostListError::BadRange {
                    list: list(bad),
                    range: list(range)
                }),
                "{bad}"
            );
        }
        let err = expand("n 1").unwrap_err();
        assert_eq!(
            err,
            HostListError::BadChar {
                list: list("n 1"),
                at: 1,
                found: ' '
            }
        );
        assert!(err.to_string().contains("position 1"), "{err}");
        assert_eq!(
            expand("n[0-99999999]"),
            Err(HostListError::TooMany {
                list: list("n[0-99999999]")
            })
        );
        assert_eq!(
            expand("a[0-1023]b[0-1023]c[0-3]"),
            Err(HostListError::TooMany {
                list: list("a[0-1023]b[0-1023]c[0-3]")
            })
        );
    }
}
