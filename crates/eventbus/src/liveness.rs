//! Whether the process that holds a lease is provably gone, so that nobody waits out its lease.
//!
//! A holder's name starts with its process's [`tag`]: the kernel's boot id, the inode of its pid
//! namespace, and its pid. When the boot id and the namespace are this process's own, the pid
//! can be asked about: if no such process exists, the holder died (`kill -9`, a crash) and its
//! lease is void. A holder on another machine or in another container, or a pid that was given
//! to a new process since, is never declared gone: its lease is waited out, as before.

use std::sync::OnceLock;

/// This process's tag, `<boot id>.<pid namespace inode>.<pid>`; ends with a `/` so that a name
/// can follow it.
pub fn tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| tag_of(std::process::id()))
}

/// The tag of process `pid` of this machine and pid namespace.
pub fn tag_of(pid: u32) -> String {
    format!("{}.{pid}/", machine())
}

/// Whether the holder named `name` (which starts with its [`tag`]) is a process of this machine
/// and pid namespace that no longer exists.
pub fn is_gone(name: &str) -> bool {
    let Some((tag, _)) = name.split_once('/') else { return false };
    let Some((machine_part, pid)) = tag.rsplit_once('.') else { return false };
    if machine_part != machine() {
        return false;
    }
    let Ok(pid) = pid.parse::<i32>() else { return false };
    let Some(pid) = rustix::process::Pid::from_raw(pid) else { return false };
    matches!(rustix::process::test_kill_process(pid), Err(rustix::io::Errno::SRCH))
}

/// `<boot id>.<pid namespace inode>`, or a random value where `/proc` does not say (then no
/// other process matches it, and nothing is ever declared gone).
fn machine() -> &'static str {
    static MACHINE: OnceLock<String> = OnceLock::new();
    MACHINE.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().replace('-', ""));
        let namespace = std::fs::read_link("/proc/self/ns/pid").ok().and_then(|link| {
            let text = link.to_string_lossy().into_owned();
            text.strip_prefix("pid:[")?.strip_suffix(']').map(str::to_owned)
        });
        match (boot, namespace) {
            (Some(boot), Some(namespace)) if !boot.is_empty() => format!("{boot}.{namespace}"),
            _ => format!("unknown-{}", uuid::Uuid::new_v4().simple()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_not_gone_and_a_dead_one_is() {
        // Given this process and a child that has exited
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let name_of = |pid: u32| format!("{}member-1", tag_of(pid));

        // Then this process is not gone, the reaped child is, and foreign or malformed names never are
        assert!(!is_gone(&format!("{}member", tag())));
        assert!(is_gone(&name_of(dead)));
        assert!(!is_gone(&format!("0123456789abcdef.4026531836.{dead}/member")), "another machine");
        for name in ["", "member", "a.b/c", &format!("{}.notapid/x", machine())] {
            assert!(!is_gone(name), "{name}");
        }
    }
}
