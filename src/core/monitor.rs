//! Ping monitor decisions: for one machine, its probe results in order → its state (up or
//! down, with hysteresis: `down_after` lost probes in a row, `up_after` answered ones) and
//! whether its round trip is over the slow threshold; and which changes alert. A machine
//! alerts once per change of state, never again until it changes back; the first state the
//! monitor learns (at start, or for a new machine) is recorded but does not alert.
//! Pure: the service (`services::ping`) sends the probes and delivers the alerts.
use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub down_after: u32,
    pub up_after: u32,
    /// Round trip (ms) over which an up machine is slow, after `down_after` such probes.
    pub slow_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Unknown,
    Up,
    Down,
}

/// A change worth an event: the machine's new state, or crossing the slow threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// "up", "down", "slow" or "normal" (back under the threshold).
    pub state: &'static str,
    pub reason: String,
    /// Whether this change is alerted (webhook, command).
    pub alert: bool,
}

/// What the monitor remembers of one machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Track {
    pub state: State,
    pub slow: bool,
    pub last_rtt_ms: Option<f64>,
    answered: u32,
    lost: u32,
    over: u32,
}

impl Track {
    /// One probe's result (`rtt_ms` None: no answer within the timeout) → the change, if any.
    pub fn observe(&mut self, rtt_ms: Option<f64>, s: &Settings) -> Option<Change> {
        self.last_rtt_ms = rtt_ms;
        let Some(rtt) = rtt_ms else {
            self.answered = 0;
            self.over = 0;
            self.lost = self.lost.saturating_add(1);
            if self.state != State::Down && self.lost >= s.down_after.max(1) {
                let was = self.state;
                self.state = State::Down;
                self.slow = false;
                return Some(Change {
                    state: "down",
                    reason: format!("{} pings in a row unanswered", self.lost),
                    alert: was == State::Up,
                });
            }
            return None;
        };
        self.lost = 0;
        self.answered = self.answered.saturating_add(1);
        match self.state {
            State::Unknown => {
                self.state = State::Up;
                return Some(Change {
                    state: "up",
                    reason: format!("answers ping ({rtt:.1} ms)"),
                    alert: false,
                });
            }
            State::Down if self.answered >= s.up_after.max(1) => {
                self.state = State::Up;
                return Some(Change {
                    state: "up",
                    reason: format!("{} pings in a row answered ({rtt:.1} ms)", self.answered),
                    alert: true,
                });
            }
            State::Down => return None,
            State::Up => {}
        }
        let limit = s.slow_ms?;
        if rtt > limit {
            self.over = self.over.saturating_add(1);
            if !self.slow && self.over >= s.down_after.max(1) {
                self.slow = true;
                return Some(Change {
                    state: "slow",
                    reason: format!(
                        "{} pings in a row over {limit} ms (last {rtt:.1} ms)",
                        self.over
                    ),
                    alert: true,
                });
            }
        } else {
            self.over = 0;
            if self.slow {
                self.slow = false;
                return Some(Change {
                    state: "normal",
                    reason: format!("back under {limit} ms ({rtt:.1} ms)"),
                    alert: true,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Settings = Settings {
        down_after: 3,
        up_after: 2,
        slow_ms: Some(100.0),
    };

    fn run(t: &mut Track, seq: &[Option<f64>]) -> Vec<(&'static str, bool)> {
        seq.iter()
            .filter_map(|r| t.observe(*r, &S))
            .map(|c| (c.state, c.alert))
            .collect()
    }

    #[test]
    fn hysteresis_and_one_alert_per_change() {
        let mut t = Track::default();
        // First sight: up, recorded, not alerted.
        assert_eq!(run(&mut t, &[Some(1.0)]), vec![("up", false)]);
        // Two lost probes are not down yet; the third is; more lost ones say nothing again.
        assert_eq!(run(&mut t, &[None, None]), vec![]);
        assert_eq!(run(&mut t, &[None, None, None, None]), vec![("down", true)]);
        // One answer is not up yet (up_after 2); a lost one in between starts again.
        assert_eq!(run(&mut t, &[Some(1.0), None, Some(1.0)]), vec![]);
        assert_eq!(run(&mut t, &[Some(1.0), Some(1.0)]), vec![("up", true)]);
        // Flapping under the thresholds never alerts.
        assert_eq!(
            run(&mut t, &[None, None, Some(1.0), None, None, Some(1.0)]),
            vec![]
        );
    }

    #[test]
    fn a_machine_first_seen_down_does_not_alert_until_it_was_up() {
        let mut t = Track::default();
        assert_eq!(run(&mut t, &[None, None, None]), vec![("down", false)]);
        assert_eq!(run(&mut t, &[Some(2.0), Some(2.0)]), vec![("up", true)]);
    }

    #[test]
    fn slow_after_three_over_the_threshold_and_back() {
        let mut t = Track::default();
        run(&mut t, &[Some(1.0)]);
        assert_eq!(run(&mut t, &[Some(150.0), Some(150.0)]), vec![]);
        assert_eq!(
            run(&mut t, &[Some(150.0), Some(170.0)]),
            vec![("slow", true)]
        );
        assert_eq!(run(&mut t, &[Some(5.0), Some(5.0)]), vec![("normal", true)]);
        // Down clears slow; coming back up is not "normal" as well.
        run(&mut t, &[Some(150.0), Some(150.0), Some(150.0)]);
        assert!(t.slow);
        assert_eq!(run(&mut t, &[None, None, None]), vec![("down", true)]);
        assert!(!t.slow);
    }
}
