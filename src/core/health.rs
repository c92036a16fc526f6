//! What the health page shows about the daemon itself, kept from its own events: the last
//! inventory load and its problems (with path:line), backup runs, power problems, caught panics,
//! rejected packets. Pure and bounded: events in, a small summary out.
use super::event::Event;
use std::collections::VecDeque;

/// How many recent entries each list keeps.
pub const KEEP: usize = 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub time_ms: i64,
    pub machines: usize,
    pub profiles: usize,
    /// `path:line: message` of each problem of that load.
    pub problems: Vec<String>,
}

/// A dated line for one of the lists.
pub type Note = (i64, String);

#[derive(Debug, Clone, Default)]
pub struct Health {
    pub started_ms: Option<i64>,
    pub last_load: Option<Load>,
    pending: Vec<String>,
    pub backups_ok: VecDeque<Note>,
    pub backups_failed: VecDeque<Note>,
    pub power: VecDeque<Note>,
    pub panics: VecDeque<Note>,
    pub rejected: u64,
    pub last_rejected: Option<Note>,
}

fn push(list: &mut VecDeque<Note>, t: i64, s: String) {
    if list.len() == KEEP {
        list.pop_back();
    }
    list.push_front((t, s));
}

impl Health {
    pub fn observe(&mut self, e: &Event, t: i64) {
        self.started_ms.get_or_insert(t);
        match e {
            // At most 1000 problems are kept for one load.
            Event::InventoryProblem {
                path,
                line,
                message,
            } if self.pending.len() < 1000 => {
                let at = line.map(|l| format!(":{l}")).unwrap_or_default();
                self.pending
                    .push(format!("{}{at}: {message}", path.display()));
            }
            Event::InventoryLoaded {
                machines, profiles, ..
            } => {
                self.last_load = Some(Load {
                    time_ms: t,
                    machines: *machines,
                    profiles: *profiles,
                    problems: std::mem::take(&mut self.pending),
                });
            }
            Event::BackupPulled {
                host,
                files,
                changed,
                ..
            } => push(
                &mut self.backups_ok,
                t,
                format!("{host}: {files} files, {changed} changed"),
            ),
            Event::BackupFailed {
                host,
                attempts,
                reason,
            } => push(
                &mut self.backups_failed,
                t,
                format!("{host}: {reason} (after {attempts} attempts)"),
            ),
            Event::PowerFailed {
                host,
                action,
                reason,
            } => push(
                &mut self.power,
                t,
                format!("{action} {host} failed: {reason}"),
            ),
            Event::PowerMissed { target, missed } => push(
                &mut self.power,
                t,
                format!("{target}: missed {}", missed.join(", ")),
            ),
            Event::HandlerPanicked {
                proto,
                peer,
                message,
                ..
            } => push(
                &mut self.panics,
                t,
                format!("{proto} from {peer}: {message}"),
            ),
            Event::PacketRejected {
                proto,
                peer,
                reason,
                ..
            } => {
                self.rejected += 1;
                self.last_rejected = Some((t, format!("{proto} from {peer}: {reason}")));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_carries_the_problems_reported_before_it() {
        let mut h = Health::default();
        h.observe(
            &Event::InventoryProblem {
                path: "machines/k1.toml".into(),
                line: Some(3),
                message: "bad mac".into(),
            },
            1,
        );
        h.observe(
            &Event::InventoryLoaded {
                machines: 4,
                profiles: 2,
                problems: 1,
            },
            2,
        );
        let l = h.last_load.clone().unwrap();
        assert_eq!(
            (l.machines, l.problems.clone()),
            (4, vec!["machines/k1.toml:3: bad mac".to_string()])
        );
        h.observe(
            &Event::InventoryLoaded {
                machines: 5,
                profiles: 2,
                problems: 0,
            },
            3,
        );
        assert!(
            h.last_load.unwrap().problems.is_empty(),
            "a clean reload clears them"
        );
        assert_eq!(h.started_ms, Some(1));
    }

    #[test]
    fn lists_stay_bounded_newest_first() {
        let mut h = Health::default();
        for i in 0..50 {
            h.observe(
                &Event::BackupFailed {
                    host: format!("h{i}"),
                    attempts: 3,
                    reason: "timeout".into(),
                },
                i,
            );
        }
        assert_eq!(h.backups_failed.len(), KEEP);
        assert!(h.backups_failed[0].1.starts_with("h49"));
    }
}
