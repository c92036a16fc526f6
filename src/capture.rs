//! `pxelator capture` and `POST /api/capture`: frames of one interface (AF_PACKET through
//! pnet_datalink) that [`crate::core::capture::matches`] keeps, written as a standard pcap
//! (pcap-file) that tcpdump and Wireshark read. Bounded by time, packets and bytes
//! ([`Limits`]); each capture is a `capture_taken` event.
use crate::core::capture::{Filter, Limits};
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Frames written, and the pcap's size in bytes (its header, and per frame a record
    /// header and the frame).
    pub packets: u64,
    pub bytes: u64,
    /// Frames seen on the interface (kept or not).
    pub seen: u64,
    pub secs: f64,
    /// Why it stopped: "time", "packets" or "size".
    pub stopped_by: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0}")]
    Bad(String),
    #[error("no interface {0:?} here (ip link shows the names)")]
    NoInterface(String),
    #[error("capturing on {iface}: {source} (capturing needs root or CAP_NET_RAW)")]
    Open {
        iface: String,
        source: std::io::Error,
    },
    #[error("capturing on {iface}: {source}")]
    Read {
        iface: String,
        source: std::io::Error,
    },
    #[error("writing the pcap: {0}")]
    Write(String),
}

/// Captures on `iface` into `out` until a bound of `limits` is reached.
pub fn capture(
    iface: &str,
    filter: &Filter,
    limits: &Limits,
    out: impl Write,
) -> Result<Summary, CaptureError> {
    crate::core::capture::check_iface(iface).map_err(CaptureError::Bad)?;
    let nic = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface)
        .ok_or_else(|| CaptureError::NoInterface(iface.to_owned()))?;
    let config = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let mut rx = match pnet_datalink::channel(&nic, config) {
        Ok(pnet_datalink::Channel::Ethernet(_, rx)) => rx,
        Ok(_) => {
            return Err(CaptureError::Bad(format!(
                "{iface} is not an Ethernet interface"
            )))
        }
        Err(source) => {
            return Err(CaptureError::Open {
                iface: iface.to_owned(),
                source,
            })
        }
    };
    let mut w =
        pcap_file::pcap::PcapWriter::new(out).map_err(|e| CaptureError::Write(e.to_string()))?;
    let start = Instant::now();
    let end = start + Duration::from_secs(limits.secs);
    let (mut packets, mut seen) = (0u64, 0u64);
    // The pcap's size: its 24-byte header, then 16 bytes and the frame per packet.
    let mut size = 24u64;
    let stopped_by = loop {
        if packets >= limits.packets {
            break "packets";
        }
        if Instant::now() >= end {
            break "time";
        }
        let frame = match rx.next() {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                continue
            }
            Err(source) => {
                return Err(CaptureError::Read {
                    iface: iface.to_owned(),
                    source,
                })
            }
        };
        seen += 1;
        if !crate::core::capture::matches(filter, frame) {
            continue;
        }
        let record = 16 + frame.len() as u64;
        if size + record > limits.bytes {
            break "size";
        }
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        w.write_packet(&pcap_file::pcap::PcapPacket::new(ts, len, frame))
            .map_err(|e| CaptureError::Write(e.to_string()))?;
        packets += 1;
        size += record;
    };
    w.into_writer()
        .flush()
        .map_err(|e| CaptureError::Write(e.to_string()))?;
    Ok(Summary {
        packets,
        bytes: size,
        seen,
        secs: start.elapsed().as_secs_f64(),
        stopped_by,
    })
}
