//! A machine's boot story: its audit events (DHCP, TFTP, HTTP, syslog) cut into boots, each a
//! sequence of phases with their durations and the files served. Pure: stored event documents
//! in (any order), boots out (newest first).
//!
//! A boot starts with a DHCP reply after more than [`QUIET_MS`] without anything from the
//! machine, or after its running system has sent syslog; consecutive events of one protocol
//! make one phase. The time between the last file the boot loader fetched and the next thing
//! the machine does (its own DHCP or syslog) is shown as the kernel phase.
use serde_json::Value;

/// Silence that separates two boots.
pub const QUIET_MS: i64 = 3 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseKind {
    Dhcp,
    Tftp,
    Http,
    /// From the last file served to the next thing the machine did.
    Kernel,
    Syslog,
}

impl PhaseKind {
    pub fn name(self) -> &'static str {
        match self {
            PhaseKind::Dhcp => "DHCP",
            PhaseKind::Tftp => "TFTP",
            PhaseKind::Http => "HTTP",
            PhaseKind::Kernel => "kernel",
            PhaseKind::Syslog => "syslog",
        }
    }
    fn of(source: &str) -> Option<PhaseKind> {
        match source {
            "dhcp" => Some(PhaseKind::Dhcp),
            "tftp" => Some(PhaseKind::Tftp),
            "http" => Some(PhaseKind::Http),
            "syslog" => Some(PhaseKind::Syslog),
            _ => None,
        }
    }
}

/// A file served in a phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub file: String,
    pub bytes: Option<u64>,
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub kind: PhaseKind,
    pub start_ms: i64,
    pub end_ms: i64,
    pub events: usize,
    pub files: Vec<Served>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Boot {
    pub start_ms: i64,
    pub end_ms: i64,
    pub phases: Vec<Phase>,
}

impl Boot {
    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }

    /// Boot time: from its first DHCP reply to the booted system's first syslog message, or
    /// to the end of the boot when the system sends none.
    pub fn boot_time_ms(&self) -> i64 {
        self.phases
            .iter()
            .find(|p| p.kind == PhaseKind::Syslog)
            .map_or(self.end_ms, |p| p.start_ms)
            - self.start_ms
    }
}

struct Ev<'a> {
    t: i64,
    kind: PhaseKind,
    doc: &'a Value,
}

fn served(doc: &Value) -> Option<Served> {
    let kind = doc.get("kind")?.as_str()?;
    if !matches!(kind, "tftp_finished" | "http_served") {
        return None;
    }
    Some(Served {
        file: doc.get("file")?.as_str()?.to_string(),
        bytes: doc.get("bytes").and_then(Value::as_u64),
        duration_ms: doc.get("duration_ms").and_then(Value::as_u64),
    })
}

/// A boot loader, its script or config (after these the machine is not running a kernel yet:
/// iPXE's own DHCP follows the TFTP of iPXE).
fn is_loader(file: &str) -> bool {
    let f = file.rsplit('/').next().unwrap_or(file);
    [".efi", ".kpxe", ".pxe", ".0", ".c32", ".ipxe"]
        .iter()
        .any(|x| f.ends_with(x))
        || file.contains("pxelinux.cfg")
}

/// The boots in `docs` (newest first), at most `limit`.
pub fn boots(docs: &[Value], limit: usize) -> Vec<Boot> {
    let mut evs: Vec<Ev> = docs
        .iter()
        .filter_map(|d| {
            let t = d.get("time_ms")?.as_i64()?;
            let kind = PhaseKind::of(d.get("source")?.as_str()?)?;
            Some(Ev { t, kind, doc: d })
        })
        .collect();
    evs.sort_by_key(|e| e.t);
    let mut out: Vec<Boot> = Vec::new();
    let mut last_t = i64::MIN;
    for e in &evs {
        let new_boot = match out.last() {
            None => e.kind == PhaseKind::Dhcp,
            Some(b) => {
                e.kind == PhaseKind::Dhcp
                    && (e.t - last_t > QUIET_MS
                        || b.phases.iter().any(|p| p.kind == PhaseKind::Syslog))
            }
        };
        last_t = e.t;
        if new_boot {
            out.push(Boot {
                start_ms: e.t,
                end_ms: e.t,
                phases: Vec::new(),
            });
        }
        let Some(b) = out.last_mut() else { continue };
        // What the machine did after the boot loader's last file: the kernel ran meanwhile.
        let after_files = b.phases.last().is_some_and(|p| {
            matches!(p.kind, PhaseKind::Http | PhaseKind::Tftp)
                && p.files.last().is_some_and(|f| !is_loader(&f.file))
        }) && matches!(e.kind, PhaseKind::Dhcp | PhaseKind::Syslog);
        if after_files && b.phases.iter().all(|p| p.kind != PhaseKind::Kernel) {
            let from = b.end_ms;
            b.phases.push(Phase {
                kind: PhaseKind::Kernel,
                start_ms: from,
                end_ms: e.t,
                events: 0,
                files: Vec::new(),
            });
        }
        match b.phases.last_mut() {
            Some(p) if p.kind == e.kind => {
                p.end_ms = e.t;
                p.events += 1;
                p.files.extend(served(e.doc));
            }
            _ => b.phases.push(Phase {
                kind: e.kind,
                start_ms: e.t,
                end_ms: e.t,
                events: 1,
                files: served(e.doc).into_iter().collect(),
            }),
        }
        b.end_ms = e.t;
    }
    out.reverse();
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(t: i64, source: &str, kind: &str, file: Option<&str>) -> Value {
        let mut v = json!({"time_ms": t, "source": source, "kind": kind});
        if let Some(f) = file {
            v["file"] = json!(f);
            v["bytes"] = json!(1000);
        }
        v
    }

    #[test]
    fn a_pxe_to_ipxe_boot_in_phases() {
        // Firmware DHCP, TFTP of iPXE, iPXE's own DHCP, HTTP script + kernel + initrd, the
        // kernel's DHCP, then syslog from the running system.
        let docs = vec![
            ev(0, "dhcp", "dhcp_reply", None),
            ev(500, "dhcp", "dhcp_reply", None),
            ev(1_000, "tftp", "tftp_started", None),
            ev(2_000, "tftp", "tftp_finished", Some("snponly.efi")),
            ev(2_500, "dhcp", "dhcp_reply", None),
            ev(3_000, "http", "http_served", Some("/boot/x.ipxe")),
            ev(4_000, "http", "http_served", Some("/files/k/vmlinuz")),
            ev(6_000, "http", "http_served", Some("/files/k/initrd.img")),
            ev(20_000, "dhcp", "dhcp_reply", None),
            ev(25_000, "syslog", "syslog", None),
            ev(1, "audit", "other", None),
        ];
        let b = boots(&docs, 10);
        assert_eq!(b.len(), 1);
        let kinds: Vec<&str> = b[0].phases.iter().map(|p| p.kind.name()).collect();
        assert_eq!(
            kinds,
            ["DHCP", "TFTP", "DHCP", "HTTP", "kernel", "DHCP", "syslog"]
        );
        let kernel = &b[0].phases[4];
        assert_eq!((kernel.start_ms, kernel.end_ms), (6_000, 20_000));
        assert_eq!(b[0].phases[3].files.len(), 3);
        assert_eq!(b[0].duration_ms(), 25_000);
    }

    #[test]
    fn boots_are_cut_by_silence_or_by_a_dhcp_after_syslog() {
        let docs = vec![
            ev(0, "dhcp", "dhcp_reply", None),
            ev(1_000, "syslog", "syslog", None),
            ev(2_000, "dhcp", "dhcp_reply", None),
            ev(2_000 + QUIET_MS + 1, "dhcp", "dhcp_reply", None),
            ev(
                2_000 + QUIET_MS + 2,
                "http",
                "http_served",
                Some("/boot/y.ipxe"),
            ),
        ];
        let b = boots(&docs, 10);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].phases.len(), 2, "newest first");
        assert_eq!(boots(&docs, 1).len(), 1);
        assert!(
            boots(&[ev(5, "http", "http_served", Some("/x"))], 5).is_empty(),
            "no DHCP, no boot"
        );
    }
}
