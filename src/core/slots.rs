//! The appliance's A/B system slots: which one boots, which one is on trial after an update,
//! and what `pxelator appliance update|confirm|rollback` change. The state lives in GRUB's
//! environment block on the ESP; GRUB's side of the protocol is in image/appliance/grub.cfg:
//!
//! - `try_slot` set, `tried` empty: GRUB sets `tried=1` and boots `try_slot` (once).
//! - `try_slot` set, `tried=1`: that trial boot never confirmed; GRUB sets
//!   `failed_slot=<try_slot>`, clears the trial and boots `slot`: the rollback is automatic.
//! - otherwise GRUB boots `slot`.
//!
//! Confirming (the health check passed on the trial boot) makes the tried slot `slot`.
use super::event::Event;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "A" => Some(Slot::A),
            "B" => Some(Slot::B),
            _ => None,
        }
    }
    /// The GPT partition name of the slot (`sys-a`, `sys-b`).
    pub fn partition(self) -> &'static str {
        match self {
            Slot::A => "sys-a",
            Slot::B => "sys-b",
        }
    }
    /// The ext4 label GRUB and live-boot find the slot by.
    pub fn label(self) -> &'static str {
        match self {
            Slot::A => "PXL-SYS-A",
            Slot::B => "PXL-SYS-B",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// The boot state as GRUB's environment block holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// The committed slot: booted unless a trial is pending.
    pub slot: Slot,
    /// An updated slot to boot once, on trial.
    pub try_slot: Option<Slot>,
    /// GRUB has booted the trial slot once.
    pub tried: bool,
    /// The last trial that GRUB rolled back from.
    pub failed_slot: Option<Slot>,
    /// The rollback from `failed_slot` has been recorded in the audit store.
    pub failure_noted: bool,
    pub version_a: Option<String>,
    pub version_b: Option<String>,
}

impl SlotState {
    /// A freshly built image: system A holds `version`, B is empty.
    pub fn new(version: &str) -> SlotState {
        SlotState {
            slot: Slot::A,
            try_slot: None,
            tried: false,
            failed_slot: None,
            failure_noted: false,
            version_a: Some(version.to_string()),
            version_b: None,
        }
    }

    pub fn version(&self, s: Slot) -> Option<&str> {
        match s {
            Slot::A => self.version_a.as_deref(),
            Slot::B => self.version_b.as_deref(),
        }
    }

    fn set_version(&mut self, s: Slot, v: Option<String>) {
        match s {
            Slot::A => self.version_a = v,
            Slot::B => self.version_b = v,
        }
    }

    fn version_text(&self, s: Slot) -> String {
        self.version(s).unwrap_or("(empty)").to_string()
    }

    /// From the environment block's variables; unknown variables are kept out of the way.
    pub fn from_env(vars: &[(String, String)]) -> Result<SlotState, String> {
        let get = |k: &str| {
            vars.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let slot_var = |k: &str| -> Result<Option<Slot>, String> {
            get(k)
                .map(|v| {
                    Slot::parse(v).ok_or_else(|| {
                        format!("grubenv: {k}={v:?} is not A or B (fix it with grub-editenv or `pxelator appliance rollback`)")
                    })
                })
                .transpose()
        };
        Ok(SlotState {
            slot: slot_var("slot")?.unwrap_or(Slot::A),
            try_slot: slot_var("try_slot")?,
            tried: get("tried").is_some(),
            failed_slot: slot_var("failed_slot")?,
            failure_noted: get("failure_noted").is_some(),
            version_a: get("version_A").map(str::to_string),
            version_b: get("version_B").map(str::to_string),
        })
    }

    /// The variables for the environment block (every one written, empty when unset, so the
    /// block's content does not depend on history).
    pub fn to_env(&self) -> Vec<(String, String)> {
        let s = |o: Option<Slot>| o.map(|s| s.to_string()).unwrap_or_default();
        let flag = |b: bool| if b { "1".to_string() } else { String::new() };
        vec![
            ("slot".into(), self.slot.to_string()),
            ("try_slot".into(), s(self.try_slot)),
            ("tried".into(), flag(self.tried)),
            ("failed_slot".into(), s(self.failed_slot)),
            ("failure_noted".into(), flag(self.failure_noted)),
            (
                "version_A".into(),
                self.version_a.clone().unwrap_or_default(),
            ),
            (
                "version_B".into(),
                self.version_b.clone().unwrap_or_default(),
            ),
        ]
    }

    /// The running system has not been confirmed yet.
    pub fn on_trial(&self, booted: Slot) -> bool {
        self.try_slot == Some(booted)
    }
}

/// Which slot an update writes, and the state that boots it once on trial.
pub fn plan_update(
    state: &SlotState,
    booted: Slot,
    new_version: &str,
) -> Result<(Slot, SlotState), String> {
    if state.on_trial(booted) {
        return Err(format!(
            "system {booted} is still on trial (not yet confirmed healthy): wait for its health \
             check (`pxelator appliance status`) before updating again"
        ));
    }
    if booted != state.slot {
        return Err(format!(
            "the running system is {booted} but the committed one is {}: run `pxelator appliance \
             rollback` or reboot before updating",
            state.slot
        ));
    }
    let target = booted.other();
    let mut next = state.clone();
    next.try_slot = Some(target);
    next.tried = false;
    next.failed_slot = None;
    next.failure_noted = false;
    next.set_version(target, Some(new_version.to_string()));
    Ok((target, next))
}

/// Before writing a slot: it holds no system GRUB could fall back to any more.
pub fn plan_erase(state: &SlotState, target: Slot) -> SlotState {
    let mut next = state.clone();
    next.set_version(target, None);
    if next.try_slot == Some(target) {
        next.try_slot = None;
        next.tried = false;
    }
    next
}

/// What the boot-time health check does.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirm {
    /// Nothing to change (a normal boot of the committed slot).
    Nothing,
    /// Write the new state and record the event.
    Record(SlotState, Event),
    /// The trial system is unhealthy: record the event and reboot, so GRUB falls back.
    FailAndReboot(Event),
}

/// The decision of the health check on `booted`, given whether the daemon is healthy.
pub fn confirm(state: &SlotState, booted: Slot, health: Result<(), String>) -> Confirm {
    if state.on_trial(booted) {
        let from = booted.other();
        return match health {
            Ok(()) => {
                let mut next = state.clone();
                next.slot = booted;
                next.try_slot = None;
                next.tried = false;
                Confirm::Record(
                    next,
                    Event::ApplianceUpdated {
                        slot: booted.to_string(),
                        version: state.version_text(booted),
                        from_slot: from.to_string(),
                        from_version: state.version_text(from),
                    },
                )
            }
            Err(reason) => Confirm::FailAndReboot(Event::ApplianceUpdateFailed {
                slot: booted.to_string(),
                version: state.version_text(booted),
                reason,
            }),
        };
    }
    match state.failed_slot {
        Some(failed) if !state.failure_noted => {
            let mut next = state.clone();
            next.failure_noted = true;
            Confirm::Record(
                next,
                Event::ApplianceRolledBack {
                    failed_slot: failed.to_string(),
                    failed_version: state.version_text(failed),
                    slot: booted.to_string(),
                    version: state.version_text(booted),
                },
            )
        }
        _ => Confirm::Nothing,
    }
}

/// Make the other slot the committed one (it must hold a system).
pub fn plan_rollback(state: &SlotState, booted: Slot) -> Result<SlotState, String> {
    let other = booted.other();
    if state.version(other).is_none() {
        return Err(format!(
            "system {other} holds no system to roll back to (`pxelator appliance status` shows both slots)"
        ));
    }
    let mut next = state.clone();
    next.slot = other;
    next.try_slot = None;
    next.tried = false;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_round_trip(s: &SlotState) -> SlotState {
        SlotState::from_env(&s.to_env()).unwrap()
    }

    #[test]
    fn update_then_healthy_trial_commits_the_new_slot() {
        let s = SlotState::new("v1");
        let (target, s) = plan_update(&s, Slot::A, "v2").unwrap();
        assert_eq!(target, Slot::B);
        assert_eq!(s.try_slot, Some(Slot::B));
        assert_eq!(
            s.slot,
            Slot::A,
            "the old slot stays committed until the trial passes"
        );
        // GRUB booted B once (tried=1); the health check passes there.
        let mut s = env_round_trip(&s);
        s.tried = true;
        let Confirm::Record(s, ev) = confirm(&s, Slot::B, Ok(())) else {
            panic!()
        };
        assert_eq!(
            (s.slot, s.try_slot, s.version(Slot::B)),
            (Slot::B, None, Some("v2"))
        );
        assert!(
            matches!(ev, Event::ApplianceUpdated { ref version, ref from_version, .. } if version == "v2" && from_version == "v1")
        );
        // Later boots of B: nothing to do.
        assert_eq!(confirm(&s, Slot::B, Ok(())), Confirm::Nothing);
    }

    #[test]
    fn unhealthy_trial_reboots_and_the_fallback_is_recorded_once() {
        let (_, mut s) = plan_update(&SlotState::new("v1"), Slot::A, "broken").unwrap();
        s.tried = true;
        let d = confirm(&s, Slot::B, Err("pxelator.service is failed".into()));
        assert!(
            matches!(d, Confirm::FailAndReboot(Event::ApplianceUpdateFailed { ref reason, .. }) if reason.contains("failed"))
        );
        // What GRUB does on the next boot (grub.cfg): the trial was tried, so back to A.
        s.failed_slot = s.try_slot.take();
        s.tried = false;
        let Confirm::Record(s2, ev) = confirm(&s, Slot::A, Ok(())) else {
            panic!()
        };
        assert!(
            matches!(ev, Event::ApplianceRolledBack { ref failed_version, ref slot, .. } if failed_version == "broken" && slot == "A")
        );
        assert_eq!(
            confirm(&env_round_trip(&s2), Slot::A, Ok(())),
            Confirm::Nothing
        );
    }

    #[test]
    fn refuses_to_update_over_an_unconfirmed_or_uncommitted_system() {
        let (_, s) = plan_update(&SlotState::new("v1"), Slot::A, "v2").unwrap();
        assert!(plan_update(&s, Slot::B, "v3")
            .unwrap_err()
            .contains("on trial"));
        let mut manual = SlotState::new("v1");
        manual.version_b = Some("v0".into());
        assert!(plan_update(&manual, Slot::B, "v3")
            .unwrap_err()
            .contains("rollback"));
    }

    #[test]
    fn rollback_needs_a_system_in_the_other_slot() {
        let s = SlotState::new("v1");
        assert!(plan_rollback(&s, Slot::A)
            .unwrap_err()
            .contains("holds no system"));
        let mut s2 = s.clone();
        s2.version_b = Some("v0".into());
        assert_eq!(plan_rollback(&s2, Slot::A).unwrap().slot, Slot::B);
        assert_eq!(plan_erase(&s2, Slot::B).version_b, None);
    }

    #[test]
    fn bad_env_values_are_named() {
        let e = SlotState::from_env(&[("slot".into(), "C".into())]).unwrap_err();
        assert!(e.contains("slot=\"C\""), "{e}");
        assert_eq!(SlotState::from_env(&[]).unwrap().slot, Slot::A);
    }
}
