//! Per-source rate limits for events a sender controls (syslog messages, rejected packets):
//! one address cannot fill the audit store or the daemon's memory. Each source gets a token
//! bucket; what it sends beyond that is dropped and counted, and the count is reported as one
//! `suppressed` event per source per second ([`Flood::drain`]), so the audit trail says how
//! much was dropped, from whom.
use std::collections::HashMap;
use std::net::IpAddr;

/// At most this many sources are tracked; past it, the idle ones are forgotten first, and if
/// all are busy, every new source shares one bucket (a spoofed-source flood is still bounded).
const MAX_SOURCES: usize = 4096;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last_ms: i64,
    suppressed: u64,
}

#[derive(Debug)]
pub struct Flood {
    per_sec: f64,
    burst: f64,
    map: HashMap<IpAddr, Bucket>,
}

impl Flood {
    /// `per_sec` events a second per source, bursts of up to `burst`.
    pub fn new(per_sec: u32, burst: u32) -> Flood {
        Flood {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            map: HashMap::new(),
        }
    }

    /// `per_minute` events a minute per source, bursts of up to that many.
    pub fn per_minute(per_minute: u32) -> Flood {
        Flood {
            per_sec: f64::from(per_minute) / 60.0,
            burst: f64::from(per_minute.max(1)),
            map: HashMap::new(),
        }
    }

    /// Whether one more event from `ip` at `now_ms` may be recorded.
    pub fn allow(&mut self, ip: IpAddr, now_ms: i64) -> bool {
        if !self.map.contains_key(&ip) && self.map.len() >= MAX_SOURCES {
            self.map
                .retain(|_, b| b.suppressed > 0 || now_ms - b.last_ms < 60_000);
        }
        let key = if self.map.len() >= MAX_SOURCES && !self.map.contains_key(&ip) {
            IpAddr::from([0, 0, 0, 0])
        } else {
            ip
        };
        let (per_sec, burst) = (self.per_sec, self.burst);
        let b = self.map.entry(key).or_insert(Bucket {
            tokens: burst,
            last_ms: now_ms,
            suppressed: 0,
        });
        let elapsed = (now_ms - b.last_ms).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * per_sec).min(burst);
        b.last_ms = now_ms;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            b.suppressed += 1;
            false
        }
    }

    /// The sources with dropped events since the last call, and how many each (reset).
    pub fn drain(&mut self) -> Vec<(IpAddr, u64)> {
        let mut out: Vec<(IpAddr, u64)> = self
            .map
            .iter_mut()
            .filter(|(_, b)| b.suppressed > 0)
            .map(|(ip, b)| (*ip, std::mem::take(&mut b.suppressed)))
            .collect();
        out.sort();
        out
    }
}

/// `packet_rejected` events of one protocol service, through a per-source limit: a sender of
/// garbage gets [`Rejections::PER_SEC`] recorded a second; the rest is counted in
/// `suppressed` events (emitted when the next rejection comes at least a second later).
pub struct Rejections {
    proto: &'static str,
    state: std::sync::Mutex<(Flood, i64)>,
}

impl Rejections {
    pub const PER_SEC: u32 = 20;
    pub const BURST: u32 = 100;

    pub fn new(proto: &'static str) -> Rejections {
        Rejections {
            proto,
            state: std::sync::Mutex::new((Flood::new(Self::PER_SEC, Self::BURST), 0)),
        }
    }

    /// Emits `event` (a `packet_rejected` from `ip`) unless `ip` is over its limit.
    pub fn record(&self, bus: &crate::events::Bus, ip: IpAddr, event: crate::core::event::Event) {
        let now = crate::clock::unix_now_ms();
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (flood, last_drain) = &mut *st;
        if flood.allow(ip, now) {
            bus.emit(event);
        }
        if now - *last_drain >= 1000 {
            *last_drain = now;
            for (ip, count) in flood.drain() {
                bus.emit(crate::core::event::Event::Suppressed {
                    proto: self.proto,
                    what: "packet_rejected",
                    ip,
                    count,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_its_rate_and_drops_are_counted() {
        let mut f = Flood::new(10, 5);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let passed = (0..100).filter(|_| f.allow(a, 0)).count();
        assert_eq!(passed, 5, "the burst");
        assert!(f.allow(b, 0), "another source is not affected");
        // One second later: ten more.
        let passed = (0..100).filter(|_| f.allow(a, 1000)).count();
        assert_eq!(passed, 5, "refilled up to the burst, not beyond");
        assert_eq!(f.drain(), vec![(a, 190)]);
        assert_eq!(f.drain(), vec![], "reset after draining");
    }

    #[test]
    fn spoofed_sources_are_bounded_too() {
        let mut f = Flood::new(1, 1);
        let mut passed = 0;
        for i in 0..(MAX_SOURCES as u32 * 3) {
            let ip = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            passed += usize::from(f.allow(ip, 0));
        }
        assert!(f.map.len() <= MAX_SOURCES + 1, "{}", f.map.len());
        assert!(passed <= MAX_SOURCES + 1, "{passed}");
    }
}
