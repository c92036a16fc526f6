//! Inventory edits for `pxelator host add|edit|rm`: pure functions from (inventory, request)
//! to file changes, refusing anything that would clash. The caller commits the changes.
//!
//! A host added here is `machines/<name>.toml`. `edit` and `rm` work on both layouts: a
//! `machines/*.toml` file is edited key by key (other keys are kept; comments are not), a
//! machine of the original `conf/<server-ip>/<ip>/` layout has its one-line files rewritten.
use super::{Inventory, Machine};
use crate::confrepo::Change;
use crate::core::mac::Mac;
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EditError {
    #[error("{what} is already used by {other} ({path}); pick another, or change that machine with `pxelator host edit {other}`")]
    Taken {
        what: String,
        other: String,
        path: String,
    },
    #[error("no machine named {0:?} (by hostname, MAC or IP); `pxelator host list` shows them")]
    NotFound(String),
    #[error("hostname {0:?} is not valid: letters, digits and '-' (not first or last), at most 63 (RFC 1123)")]
    BadName(String),
    #[error("profile {name:?} does not exist; known profiles: {known}")]
    UnknownProfile { name: String, known: String },
    #[error("--param {0:?}: expected KEY=VALUE with KEY of letters, digits, '_' or '-' and VALUE on one line")]
    BadParam(String),
    #[error("{0}")]
    Unsupported(String),
}

/// What to set on a machine (None: leave as is).
#[derive(Debug, Default, Clone)]
pub struct HostSpec {
    pub name: Option<String>,
    pub mac: Option<Mac>,
    pub ip: Option<Ipv4Addr>,
    pub profile: Option<String>,
    pub args: Option<String>,
    /// KEY=VALUE pairs for `[params]`.
    pub params: Vec<String>,
    /// `[params]` keys to remove.
    pub unset: Vec<String>,
    /// Keep a machine that registered itself: its `registered` line goes, so it is no longer
    /// reclaimed and no longer waits in the approval queue.
    pub approve: bool,
}

/// A machine name given to `host add|edit`: one RFC 1123 label (it also names the file
/// `machines/<name>.toml`), checked by the same rule the loader applies to every hostname.
fn valid_name(n: &str) -> bool {
    !n.contains('.') && super::check_hostname(n).is_ok()
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// The machine a user means by a hostname, a MAC (any notation) or an IP.
pub fn find<'a>(inv: &'a Inventory, who: &str) -> Option<&'a Machine> {
    if let Ok(mac) = who.parse::<Mac>() {
        return inv.by_mac(&mac);
    }
    if let Ok(ip) = who.parse::<Ipv4Addr>() {
        return inv.by_ip(&ip);
    }
    inv.machines()
        .iter()
        .find(|m| m.hostname.as_deref() == Some(who))
}

fn label(m: &Machine) -> String {
    m.hostname.clone().unwrap_or_else(|| m.mac.to_string())
}

/// Refuses a MAC, IP or name another machine (not `except`) already has.
fn check_free(
    inv: &Inventory,
    root: &Path,
    spec: &HostSpec,
    except: Option<&Machine>,
) -> Result<(), EditError> {
    fn not_except<'a>(m: Option<&'a Machine>, except: Option<&Machine>) -> Option<&'a Machine> {
        m.filter(|m| except.is_none_or(|e| e.source != m.source))
    }
    let other = |m| not_except(m, except);
    let taken = |what: String, m: &Machine| EditError::Taken {
        what,
        other: label(m),
        path: rel(root, &m.source),
    };
    if let Some(m) = spec.mac.and_then(|mac| other(inv.by_mac(&mac))) {
        return Err(taken(format!("MAC {}", spec.mac.expect("checked")), m));
    }
    if let Some(m) = spec.ip.and_then(|ip| other(inv.by_ip(&ip))) {
        return Err(taken(format!("IP {}", spec.ip.expect("checked")), m));
    }
    if let Some(name) = &spec.name {
        if !valid_name(name) {
            return Err(EditError::BadName(name.clone()));
        }
        let same = inv
            .machines()
            .iter()
            .find(|m| m.hostname.as_deref() == Some(name));
        if let Some(m) = other(same) {
            return Err(taken(format!("hostname {name}"), m));
        }
    }
    if let Some(p) = &spec.profile {
        if inv.profile(p).is_none() {
            return Err(unknown_profile(inv, p));
        }
    }
    Ok(())
}

fn params(spec: &HostSpec) -> Result<Vec<(String, String)>, EditError> {
    parse_params(&spec.params)
}

/// `KEY=VALUE` strings as (key, value): keys of letters, digits, '_' or '-'; values on one
/// line (they go into boot scripts and kernel command lines).
fn parse_params(list: &[String]) -> Result<Vec<(String, String)>, EditError> {
    list.iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| EditError::BadParam(kv.clone()))?;
            let ok = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok || v.chars().any(char::is_control) {
                return Err(EditError::BadParam(kv.clone()));
            }
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// `machines/<name>.toml` for a new host; needs a name and a MAC.
pub fn add(inv: &Inventory, root: &Path, spec: &HostSpec) -> Result<Change, EditError> {
    let (Some(name), Some(mac)) = (&spec.name, spec.mac) else {
        return Err(EditError::Unsupported(
            "host add needs a name and --mac (e.g. pxelator host add kiosk7 --mac 52:54:00:12:34:57 --ip 10.77.1.17)".into(),
        ));
    };
    check_free(inv, root, spec, None)?;
    let path = format!("machines/{name}.toml");
    if root.join(&path).exists() {
        return Err(EditError::Taken {
            what: format!("file {path}"),
            other: name.clone(),
            path: path.clone(),
        });
    }
    let mut t = toml::Table::new();
    t.insert("mac".into(), mac.to_string().into());
    if let Some(ip) = spec.ip {
        t.insert("ip".into(), ip.to_string().into());
    }
    t.insert("hostname".into(), name.clone().into());
    if let Some(p) = &spec.profile {
        t.insert("profile".into(), p.clone().into());
    }
    if let Some(a) = &spec.args {
        t.insert("args".into(), a.clone().into());
    }
    let ps = params(spec)?;
    if !ps.is_empty() {
        let mut pt = toml::Table::new();
        for (k, v) in ps {
            pt.insert(k, v.into());
        }
        t.insert("params".into(), pt.into());
    }
    Ok(Change::Write(path, render(&t).into_bytes()))
}

/// A file's `[params]` table with `set` added (replacing) and `unset` removed.
fn updated_params(t: &toml::Table, set: Vec<(String, String)>, unset: &[String]) -> toml::Table {
    let mut pt = t
        .get("params")
        .and_then(|v| v.as_table())
        .cloned()
        .unwrap_or_default();
    for (k, v) in set {
        pt.insert(k, v.into());
    }
    for k in unset {
        pt.remove(k);
    }
    pt
}

fn render(t: &toml::Table) -> String {
    toml::to_string(t).unwrap_or_default()
}

/// Changes that apply `spec` to the machine `who` names.
pub fn edit(
    inv: &Inventory,
    root: &Path,
    who: &str,
    spec: &HostSpec,
) -> Result<Vec<Change>, EditError> {
    let m = find(inv, who).ok_or_else(|| EditError::NotFound(who.to_owned()))?;
    check_free(inv, root, spec, Some(m))?;
    let path = rel(root, &m.source);
    if m.source.is_dir() {
        // conf/<server-ip>/<ip>/: one file per value; the directory name is the IP.
        if spec.ip.is_some_and(|ip| Some(ip) != m.ip)
            || !spec.params.is_empty()
            || !spec.unset.is_empty()
            || spec.approve
        {
            return Err(EditError::Unsupported(format!(
                "{path} uses the conf/<server-ip>/<ip>/ layout, where the IP is the directory name \
                 and there are no params; move it to machines/<name>.toml to change those"
            )));
        }
        let mut out = Vec::new();
        let mut one = |file: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push(Change::Write(
                    format!("{path}/{file}"),
                    format!("{v}\n").into_bytes(),
                ));
            }
        };
        one("mac", spec.mac.map(|m| m.to_string()));
        one("hostname", spec.name.clone());
        one("profile", spec.profile.clone());
        one("args", spec.args.clone());
        return Ok(out);
    }
    let text = std::fs::read_to_string(&m.source).unwrap_or_default();
    let mut t: toml::Table = text
        .parse()
        .map_err(|e| EditError::Unsupported(format!("{path}: {e}")))?;
    if let Some(mac) = spec.mac {
        t.insert("mac".into(), mac.to_string().into());
    }
    if let Some(ip) = spec.ip {
        t.insert("ip".into(), ip.to_string().into());
    }
    if let Some(n) = &spec.name {
        t.insert("hostname".into(), n.clone().into());
    }
    if let Some(p) = &spec.profile {
        t.insert("profile".into(), p.clone().into());
    }
    if let Some(a) = &spec.args {
        t.insert("args".into(), a.clone().into());
    }
    if spec.approve {
        t.remove("registered");
    }
    let ps = params(spec)?;
    if !ps.is_empty() || !spec.unset.is_empty() {
        let pt = updated_params(&t, ps, &spec.unset);
        if pt.is_empty() {
            t.remove("params");
        } else {
            t.insert("params".into(), pt.into());
        }
    }
    Ok(vec![Change::Write(path, render(&t).into_bytes())])
}

fn unknown_profile(inv: &Inventory, name: &str) -> EditError {
    let mut known: Vec<&str> = inv.profiles().map(|p| p.name.as_str()).collect();
    known.sort();
    EditError::UnknownProfile {
        name: name.to_owned(),
        known: if known.is_empty() {
            "(none: add profiles/<name>.toml)".into()
        } else {
            known.join(", ")
        },
    }
}

/// The change that makes `profile` boot `image` ("name": its current version, "name-vN": that
/// version). Only the top-level `image = …` line is written; comments and the rest of the
/// file stay as they are.
pub fn profile_image(
    inv: &Inventory,
    root: &Path,
    profile: &str,
    image: &str,
) -> Result<Change, EditError> {
    let p = inv
        .profile(profile)
        .ok_or_else(|| unknown_profile(inv, profile))?;
    if !crate::image::valid_name(crate::image::split_version(image).0) {
        return Err(EditError::Unsupported(format!(
            "{image:?} is not an image name: lower-case letters, digits, '.', '_', '-', optionally -vN (`pxelator image list` shows them)"
        )));
    }
    let path = rel(root, &p.source);
    let text = std::fs::read_to_string(&p.source)
        .map_err(|e| EditError::Unsupported(format!("{path}: {e}")))?;
    let line = format!("image = \"{image}\"");
    let mut out = Vec::new();
    let mut done = false;
    for l in text.lines() {
        let t = l.trim_start();
        if !done && t.starts_with('[') {
            // Top-level keys end at the first table: put it before.
            out.push(line.clone());
            done = true;
        }
        let key = t.split('=').next().map(str::trim);
        if !done && key == Some("image") {
            out.push(line.clone());
            done = true;
            continue;
        }
        out.push(l.to_string());
    }
    if !done {
        out.push(line);
    }
    Ok(Change::Write(path, (out.join("\n") + "\n").into_bytes()))
}

/// The change to `groups/<group>.toml` that sets `set` (`KEY=VALUE`) and removes `unset` from
/// the group's defaults (its machines' own params still win). Creates the file for a new group;
/// comments in an existing one are not kept (it is rewritten from its table, like machines).
pub fn group(
    root: &Path,
    group: &str,
    set: &[String],
    unset: &[String],
) -> Result<Change, EditError> {
    let name_ok = !group.is_empty()
        && group.len() <= 64
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(EditError::Unsupported(format!(
            "group {group:?} is not a group name: letters, digits, '_' or '-' (it names groups/<name>.toml)"
        )));
    }
    let ps = parse_params(set)?;
    if ps.is_empty() && unset.is_empty() {
        return Err(EditError::Unsupported(
            "nothing to change: give --param KEY=VALUE or --unset-param KEY".into(),
        ));
    }
    if ps.iter().any(|(k, _)| k == "group") {
        return Err(EditError::Unsupported(
            "a group's defaults cannot set group (machines choose their group)".into(),
        ));
    }
    let path = format!("groups/{group}.toml");
    let text = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
    let mut t: toml::Table = text
        .parse()
        .map_err(|e| EditError::Unsupported(format!("{path}: {e}")))?;
    let pt = updated_params(&t, ps, unset);
    t.insert("params".into(), pt.into());
    Ok(Change::Write(path, render(&t).into_bytes()))
}

/// Changes that remove the machine `who` names.
pub fn remove(
    inv: &Inventory,
    root: &Path,
    who: &str,
) -> Result<(Machine, Vec<Change>), EditError> {
    let m = find(inv, who).ok_or_else(|| EditError::NotFound(who.to_owned()))?;
    let path = rel(root, &m.source);
    let changes = if m.source.is_dir() {
        std::fs::read_dir(&m.source)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| Change::Delete(format!("{path}/{}", e.file_name().to_string_lossy())))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![Change::Delete(path)]
    };
    Ok((m.clone(), changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(root: &Path) -> Inventory {
        std::fs::create_dir_all(root.join("machines")).unwrap();
        std::fs::create_dir_all(root.join("profiles")).unwrap();
        std::fs::write(
            root.join("machines/kiosk1.toml"),
            "mac = \"52:54:00:00:00:01\"\nip = \"10.77.1.11\"\nhostname = \"kiosk1\"\n# note\n",
        )
        .unwrap();
        std::fs::write(
            root.join("profiles/live.toml"),
            "boot = \"ipxe\"\nkernel = \"k\"\n",
        )
        .unwrap();
        let (inv, problems) = super::super::load(root, "10.77.1.1".parse().unwrap(), None);
        assert!(problems.is_empty(), "{problems:?}");
        inv
    }

    fn spec(name: &str, mac: &str, ip: &str) -> HostSpec {
        HostSpec {
            name: Some(name.into()),
            mac: Some(mac.parse().unwrap()),
            ip: Some(ip.parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn add_refuses_clashes_naming_the_other_machine() {
        let d = tempfile::tempdir().unwrap();
        let inv = inv(d.path());
        let e = add(
            &inv,
            d.path(),
            &spec("k2", "52-54-00-00-00-01", "10.77.1.12"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "MAC 52:54:00:00:00:01 is already used by kiosk1 (machines/kiosk1.toml); pick another, or change that machine with `pxelator host edit kiosk1`"
        );
        let e = add(
            &inv,
            d.path(),
            &spec("k2", "52:54:00:00:00:02", "10.77.1.11"),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("IP 10.77.1.11 is already used by kiosk1"),
            "{e}"
        );
        let e = add(
            &inv,
            d.path(),
            &spec("kiosk1", "52:54:00:00:00:02", "10.77.1.12"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("hostname kiosk1"), "{e}");
        let mut s = spec("k2", "52:54:00:00:00:02", "10.77.1.12");
        s.profile = Some("nope".into());
        let e = add(&inv, d.path(), &s).unwrap_err();
        assert!(e.to_string().contains("known profiles: live"), "{e}");
        s.profile = Some("live".into());
        s.params = vec!["homepage=http://lib.example/?id=MACID".into()];
        let Change::Write(p, text) = add(&inv, d.path(), &s).unwrap() else {
            panic!()
        };
        assert_eq!(p, "machines/k2.toml");
        std::fs::write(d.path().join(&p), &text).unwrap();
        let (inv2, problems) = super::super::load(d.path(), "10.77.1.1".parse().unwrap(), None);
        assert!(problems.is_empty(), "{problems:?}");
        let m = find(&inv2, "k2").unwrap();
        assert_eq!(m.params["homepage"], "http://lib.example/?id=MACID");
        assert_eq!(m.profile.as_deref(), Some("live"));
    }

    #[test]
    fn edit_keeps_other_keys_and_rm_deletes() {
        let d = tempfile::tempdir().unwrap();
        let inv = inv(d.path());
        let s = HostSpec {
            ip: Some("10.77.1.21".parse().unwrap()),
            params: vec!["location=hall".into()],
            ..Default::default()
        };
        let ch = edit(&inv, d.path(), "52:54:00:00:00:01", &s).unwrap();
        let Change::Write(p, text) = &ch[0] else {
            panic!()
        };
        let text = String::from_utf8(text.clone()).unwrap();
        assert_eq!(p, "machines/kiosk1.toml");
        assert!(text.contains("ip = \"10.77.1.21\"") && text.contains("hostname = \"kiosk1\""));
        assert!(
            text.contains("[params]") && text.contains("location = \"hall\""),
            "{text}"
        );
        assert_eq!(
            edit(&inv, d.path(), "nobody", &s).unwrap_err(),
            EditError::NotFound("nobody".into())
        );
        let (m, ch) = remove(&inv, d.path(), "kiosk1").unwrap();
        assert_eq!(m.hostname.as_deref(), Some("kiosk1"));
        assert_eq!(ch, vec![Change::Delete("machines/kiosk1.toml".into())]);
    }
}
