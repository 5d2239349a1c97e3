//! What `/proc` says about a process: CPU time (whole and per thread) and
//! memory. Linux only; a missing file reads as zero.

use std::collections::BTreeMap;
use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` times (`getconf CLK_TCK`),
/// 100 on every Linux this runs on.
const TICKS_PER_SEC: u64 = 100;

/// utime + stime of a `stat` line, and the command name.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces;
    // the fields after its closing parenthesis are plain. utime and stime
    // are fields 14 and 15, i.e. the 12th and 13th after the name.
    let open = stat.find('(')?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.get(open + 1..)?.to_string();
    let ticks = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Some((name, ticks))
}

fn ticks(d: u64) -> Duration {
    Duration::from_millis(d * 1000 / TICKS_PER_SEC)
}

/// User plus system CPU time of process `pid` so far.
pub fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    ticks(parse_stat(&stat).map_or(0, |(_, t)| t))
}

/// CPU time so far per thread name of process `pid` (threads of one name,
/// such as a pool's workers, added together; digits in names dropped so
/// numbered workers fall into one group).
pub fn cpu_by_thread(pid: u32) -> BTreeMap<String, Duration> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if let Some((name, t)) = parse_stat(&stat) {
            let group: String = name.chars().filter(|c| !c.is_ascii_digit()).collect();
            *out.entry(group).or_insert(Duration::ZERO) += ticks(t);
        }
    }
    out
}

/// (VmRSS, VmHWM) of process `pid` in KiB.
pub fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let line = "42 (actix-rt|system:0 1) S 1 2 3 4 5 6 7 8 9 10 250 70 0 0";
        assert_eq!(
            parse_stat(line),
            Some(("actix-rt|system:0 1".to_string(), 320))
        );
    }
}
