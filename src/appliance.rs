//! `pxelator appliance status|update|rollback|confirm`: the A/B system slots of the appliance
//! image (image/appliance). The decisions are [`crate::core::slots`]; here are the disk, GRUB's
//! environment block on the ESP, the boot-time health check and the audit records.
use crate::config::Config;
use crate::core::event::Event;
use crate::core::slots::{self, Confirm, Slot, SlotState};
use crate::proto::{gpt, grubenv};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the appliance's pieces are; tests point these into a scratch directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The mounted ESP (GRUB's environment block is `grub/grubenv` there).
    pub esp: PathBuf,
    /// The directory of GPT partition names (udev's /dev/disk/by-partlabel).
    pub partitions: PathBuf,
    /// The kernel command line (`pxelator.slot=A|B` names the running system).
    pub cmdline: PathBuf,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            esp: "/boot/efi".into(),
            partitions: "/dev/disk/by-partlabel".into(),
            cmdline: "/proc/cmdline".into(),
        }
    }
}

impl Layout {
    fn grubenv(&self) -> PathBuf {
        self.esp.join("grub/grubenv")
    }

    pub fn read_state(&self) -> Result<SlotState, String> {
        let path = self.grubenv();
        let block = std::fs::read(&path).map_err(|e| {
            format!(
                "{}: {e} (is the ESP mounted there? this is for the pxelator appliance image)",
                path.display()
            )
        })?;
        let vars = grubenv::parse(&block).map_err(|e| format!("{}: {e}", path.display()))?;
        SlotState::from_env(&vars).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Rewrites the environment block in place (its size never changes: GRUB writes into the
    /// same sectors at boot), then syncs it.
    pub fn write_state(&self, state: &SlotState) -> Result<(), String> {
        let path = self.grubenv();
        let block =
            grubenv::render(&state.to_env()).map_err(|e| format!("{}: {e}", path.display()))?;
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut f = OpenOptions::new().write(true).open(&path).map_err(err)?;
        f.write_all(&block).map_err(err)?;
        f.sync_all().map_err(err)
    }

    /// The running system, from `pxelator.slot=` on the kernel command line.
    pub fn booted(&self) -> Result<Slot, String> {
        let line = std::fs::read_to_string(&self.cmdline)
            .map_err(|e| format!("{}: {e}", self.cmdline.display()))?;
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("pxelator.slot="))
            .and_then(Slot::parse)
            .ok_or_else(|| {
                format!(
                    "{}: no pxelator.slot=A|B: this system was not booted from the appliance image's GRUB",
                    self.cmdline.display()
                )
            })
    }

    pub fn slot_device(&self, s: Slot) -> PathBuf {
        self.partitions.join(s.partition())
    }
}

/// What `appliance status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub running_slot: String,
    pub running_version: String,
    pub committed_slot: String,
    pub trial_slot: Option<String>,
    pub last_failed_slot: Option<String>,
    pub version_a: Option<String>,
    pub version_b: Option<String>,
}

pub fn status(layout: &Layout, running_version: &str) -> Result<Status, String> {
    let state = layout.read_state()?;
    let booted = layout.booted()?;
    Ok(Status {
        running_slot: booted.to_string(),
        running_version: running_version.to_string(),
        committed_slot: state.slot.to_string(),
        trial_slot: state.try_slot.map(|s| s.to_string()),
        last_failed_slot: state.failed_slot.map(|s| s.to_string()),
        version_a: state.version_a,
        version_b: state.version_b,
    })
}

/// The sha256 an image must have: given, or from the manifest.txt beside it
/// (`sha256 <hex> <image name>`, the name without `.zst`).
pub fn expected_sha256(image: &Path, given: Option<&str>) -> Result<String, String> {
    if let Some(h) = given {
        let h = h.to_ascii_lowercase();
        if h.len() != 64 || crate::proto::unhex(&h).is_none() {
            return Err(format!(
                "--sha256 {h:?}: give the 64 hex digits from the image's manifest"
            ));
        }
        return Ok(h);
    }
    let name = image
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".zst").to_string())
        .unwrap_or_default();
    let manifest = image.with_file_name("manifest.txt");
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        format!(
            "{}: {e}: put the image's manifest.txt beside it, or give --sha256 <hex>",
            manifest.display()
        )
    })?;
    text.lines()
        .filter_map(|l| l.strip_prefix("sha256 "))
        .filter_map(|l| l.split_once(' '))
        .find(|(_, n)| *n == name)
        .map(|(h, _)| h.to_string())
        .ok_or_else(|| format!("{}: no `sha256 <hex> {name}` line", manifest.display()))
}

/// Reads the image (raw, or zstd-compressed), hashing every byte.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(format!(
                "the image is larger than the {} bytes its partition table describes",
                self.limit
            )));
        }
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn open_image(path: &Path) -> Result<Box<dyn Read>, String> {
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut magic = [0u8; 4];
    let n = f
        .read(&mut magic)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        let d = ruzstd::decoding::StreamingDecoder::new(std::io::BufReader::new(f))
            .map_err(|e| format!("{}: zstd: {e}", path.display()))?;
        Ok(Box::new(d))
    } else {
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
    }
}

/// What an update wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Updated {
    pub slot: String,
    pub version: String,
    pub image_sha256: String,
    pub bytes: u64,
}

/// The biggest image accepted (a bound on what a hostile or damaged file makes us read).
const MAX_IMAGE: u64 = 64 << 30;

/// Writes the image's system A into the inactive slot, checks the image against its sha256 and
/// the slot against what was written, labels it, and sets it to boot once on trial.
pub fn update(
    layout: &Layout,
    image: &Path,
    sha256: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Updated, String> {
    let state = layout.read_state()?;
    let booted = layout.booted()?;
    let (target, _) = slots::plan_update(&state, booted, "?")?;
    let dev_path = layout.slot_device(target);
    let mut dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev_path)
        .map_err(|e| format!("{} (system {target}): {e}", dev_path.display()))?;
    let room = dev
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("{}: {e}", dev_path.display()))?;
    dev.seek(SeekFrom::Start(0))
        .map_err(|e| format!("{}: {e}", dev_path.display()))?;
    // From here the target holds no bootable system: say so before touching it.
    layout.write_state(&slots::plan_erase(&state, target))?;

    let mut src = Hashing {
        inner: open_image(image)?,
        hash: Sha256::new(),
        read: 0,
        limit: MAX_IMAGE,
    };
    let ctx = |e: std::io::Error| format!("{}: {e}", image.display());
    let mut head = vec![0u8; gpt::HEAD_BYTES];
    src.read_exact(&mut head).map_err(ctx)?;
    let parts = gpt::parse(&head).map_err(|e| format!("{}: {e}", image.display()))?;
    let sys = parts
        .iter()
        .find(|p| p.name == Slot::A.partition())
        .ok_or_else(|| {
            format!(
                "{}: no partition named {:?}: not a pxelator appliance image",
                image.display(),
                Slot::A.partition()
            )
        })?;
    if sys.size() > room {
        return Err(format!(
            "{}: its system partition is {} bytes, system {target} ({}) has room for {room}",
            image.display(),
            sys.size(),
            dev_path.display()
        ));
    }
    src.limit = parts
        .iter()
        .map(|p| p.offset() + p.size())
        .max()
        .unwrap_or(0)
        + (1 << 20);
    // A partition inside the table's own sectors is not one this tool writes (and would make
    // the skip below negative).
    let skip = sys
        .offset()
        .checked_sub(gpt::HEAD_BYTES as u64)
        .ok_or_else(|| {
            format!(
                "{}: its {:?} partition starts at byte {}, inside the partition table",
                image.display(),
                Slot::A.partition(),
                sys.offset()
            )
        })?;
    std::io::copy(&mut (&mut src).take(skip), &mut std::io::sink()).map_err(ctx)?;
    let mut slot_hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = sys.size();
    while left > 0 {
        let n = buf.len().min(left as usize);
        src.read_exact(&mut buf[..n]).map_err(ctx)?;
        dev.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", dev_path.display()))?;
        slot_hash.update(&buf[..n]);
        left -= n as u64;
        progress(sys.size() - left, sys.size());
    }
    dev.sync_all()
        .map_err(|e| format!("{}: {e}", dev_path.display()))?;
    std::io::copy(&mut src, &mut std::io::sink()).map_err(ctx)?;
    let got = crate::proto::hex(&src.hash.finalize());
    if got != sha256 {
        return Err(format!(
            "{}: sha256 {got}, expected {sha256}: the image is damaged or not the one its manifest \
             describes; system {target} was left unbootable, the running system {booted} stays",
            image.display()
        ));
    }
    // Read back what landed on the disk.
    dev.seek(SeekFrom::Start(0))
        .map_err(|e| format!("{}: {e}", dev_path.display()))?;
    let mut back = Sha256::new();
    let mut left = sys.size();
    while left > 0 {
        let n = buf.len().min(left as usize);
        dev.read_exact(&mut buf[..n])
            .map_err(|e| format!("{}: {e}", dev_path.display()))?;
        back.update(&buf[..n]);
        left -= n as u64;
    }
    if back.finalize() != slot_hash.finalize() {
        return Err(format!(
            "{}: read back differs from what was written (failing disk?)",
            dev_path.display()
        ));
    }
    drop(dev);
    run("e2label", &[dev_path.as_os_str(), target.label().as_ref()])?;
    let version = run(
        "debugfs",
        &["-R".as_ref(), "cat /version".as_ref(), dev_path.as_os_str()],
    )?
    .trim()
    .to_string();
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{}: the new system's /version is {version:?}: not an appliance system slot",
            dev_path.display()
        ));
    }
    // Re-read: nothing else may have changed the state meanwhile, but take what is there.
    let (_, next) = slots::plan_update(&layout.read_state()?, booted, &version)?;
    layout.write_state(&next)?;
    Ok(Updated {
        slot: target.to_string(),
        version,
        image_sha256: got,
        bytes: sys.size(),
    })
}

fn run(cmd: &str, args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e} (e2fsprogs installed?)"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn rollback(layout: &Layout) -> Result<Slot, String> {
    let state = layout.read_state()?;
    let next = slots::plan_rollback(&state, layout.booted()?)?;
    layout.write_state(&next)?;
    Ok(next.slot)
}

/// Ports bound for listening in /proc/net/{udp,tcp} text (`st` 07 for UDP, 0A for TCP).
pub fn listening_ports(proc_net: &str, state: &str) -> Vec<u16> {
    proc_net
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1)?.rsplit_once(':')?.1;
            (f.get(3)? == &state).then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// The appliance's health: the daemon READY under systemd, its sockets bound, the conf repo
/// readable. The error says what is missing.
pub fn health(cfg: &Config) -> Result<(), String> {
    let state = daemon_state()?;
    if state != "active" {
        return Err(format!(
            "pxelator.service is {state} (journalctl -u pxelator)"
        ));
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (udp, tcp) = (read("/proc/net/udp"), read("/proc/net/tcp"));
    let udp_ports = listening_ports(&udp, "07");
    let tcp_ports = listening_ports(&tcp, "0A");
    for (what, port, bound) in [
        ("DHCP", cfg.dhcp.port, udp_ports.contains(&cfg.dhcp.port)),
        (
            "TFTP",
            cfg.tftp.listen.port(),
            udp_ports.contains(&cfg.tftp.listen.port()),
        ),
        (
            "HTTP",
            cfg.http.listen.port(),
            tcp_ports.contains(&cfg.http.listen.port()),
        ),
    ] {
        if !bound {
            return Err(format!("{what} port {port} is not bound"));
        }
    }
    match crate::confrepo::ConfRepo::open(&cfg.conf_repo) {
        Ok(Some(r)) => r.head().map(|_| ()).map_err(|e| format!("conf repo: {e}")),
        Ok(None) => Err(format!("{}: no conf repo", cfg.conf_repo.display())),
        Err(e) => Err(format!("conf repo: {e}")),
    }
}

/// `systemctl is-active pxelator.service`: active once it said READY (Type=notify); failed
/// once systemd gave up restarting it.
fn daemon_state() -> Result<String, String> {
    let out = std::process::Command::new("systemctl")
        .args(["is-active", "pxelator.service"])
        .output()
        .map_err(|e| format!("systemctl: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What the boot-time check did.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirmed {
    /// A normal boot; nothing changed.
    Nothing,
    /// The state changed and `Event` was recorded.
    Recorded(Event),
    /// The trial failed: recorded; the caller reboots.
    Failed(Event),
}

/// The boot-time health check (pxelator-health.service). On a trial boot it waits up to
/// `wait` for [`health`]; the event goes to the audit store (or its spool).
pub fn confirm(layout: &Layout, config: &Path, wait: Duration) -> Result<Confirmed, String> {
    let state = layout.read_state()?;
    let booted = layout.booted()?;
    let cfg = Config::load(config).map_err(|e| e.to_string());
    let health = if state.on_trial(booted) {
        let deadline = Instant::now() + wait;
        loop {
            let h = cfg.as_ref().map_err(Clone::clone).and_then(health);
            // A daemon systemd gave up on will not get better by waiting.
            let given_up = daemon_state().is_ok_and(|s| s == "failed");
            if h.is_ok() || given_up || Instant::now() >= deadline {
                break h;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    } else {
        Ok(())
    };
    let record = |ev: &Event| {
        if let Ok(Some(a)) = cfg.as_ref().map(|c| c.audit.as_ref()) {
            if let Err(e) = crate::audit::record_events(a, std::slice::from_ref(ev)) {
                tracing::error!("appliance: could not record {}: {e}", ev.kind());
            }
        }
    };
    match slots::confirm(&state, booted, health) {
        Confirm::Nothing => Ok(Confirmed::Nothing),
        Confirm::Record(next, ev) => {
            layout.write_state(&next)?;
            record(&ev);
            Ok(Confirmed::Recorded(ev))
        }
        Confirm::FailAndReboot(ev) => {
            record(&ev);
            Ok(Confirmed::Failed(ev))
        }
    }
}

/// After `update`: the event for the audit store.
pub fn written_event(u: &Updated) -> Event {
    Event::ApplianceSlotWritten {
        slot: u.slot.clone(),
        version: u.version.clone(),
        sha256: u.image_sha256.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_ports_from_proc_net() {
        let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                   1: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0 0\n\
                   2: 0100007F:0045 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0 0\n\
                   3: 0100007F:0050 0200007F:1234 01 00000000:00000000 00:00000000 00000000     0        0 1 2 0 0\n";
        assert_eq!(listening_ports(udp, "07"), vec![67, 69]);
        assert_eq!(listening_ports(udp, "01"), vec![80]);
    }

    #[test]
    fn the_expected_checksum_comes_from_the_manifest_beside_the_image() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("pxelator-appliance-v2.img.zst");
        let h = "ab".repeat(32);
        std::fs::write(
            d.path().join("manifest.txt"),
            format!("pxelator v2\nlinux-image-amd64 1\nsha256 {h} pxelator-appliance-v2.img\n"),
        )
        .unwrap();
        assert_eq!(expected_sha256(&img, None).unwrap(), h);
        assert!(expected_sha256(&d.path().join("other.img"), None)
            .unwrap_err()
            .contains("no `sha256 <hex> other.img` line"));
        assert!(expected_sha256(&img, Some("xyz"))
            .unwrap_err()
            .contains("64 hex digits"));
        assert!(expected_sha256(&d.path().join("x/y.img"), None)
            .unwrap_err()
            .contains("--sha256"));
    }
}
