//! Recipes, decided without I/O: a recipe is a POSIX `sh` script with a `check` and an `apply`
//! function and declared parameters (comment lines at its top). This module reads a recipe's
//! declarations, binds the parameters an admin gave (checked names, quoted values), builds the
//! one script sent to a host on ssh's stdin, reads the outcome from its exit code, parses
//! `recipes.toml` assignments, and writes the recipe `recipe capture` makes from a file.
//!
//! ```sh
//! # recipe: a line present in a text file (added at its end when missing)
//! # param file: the file, an absolute path
//! # param line: the whole line, exactly
//! # default mode: 0644
//! check() { grep -qxF -- "$line" "$file"; }
//! apply() { printf '%s\n' "$line" >> "$file"; }
//! ```
//!
//! Contract: `check` changes nothing and succeeds when the host is as the recipe wants;
//! `apply` makes it so. The runner never applies where check succeeds, and checks again after
//! applying, so a recipe whose apply does not satisfy its check is reported `failed`.
use serde::Serialize;
use std::collections::BTreeMap;

/// Largest recipe script (a captured file is embedded in its recipe).
pub const MAX_RECIPE_BYTES: usize = 2 << 20;
/// Largest file `recipe capture` embeds.
pub const MAX_CAPTURED_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Param {
    pub name: String,
    pub about: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recipe {
    pub name: String,
    /// The `# recipe:` line.
    pub about: String,
    pub params: Vec<Param>,
    /// The whole script as written.
    #[serde(skip)]
    pub script: String,
}

/// A recipe name: what its file is called (`recipes/NAME.sh`) and how commands name it.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "recipe name {name:?}: lowercase letters, digits and '-' (at most 64), e.g. motd-line"
        ))
    }
}

/// A parameter name becomes a shell variable: lowercase, so it can never be PATH, IFS or
/// another variable the shell or the wrapper uses (`pxl_` is the wrapper's).
fn check_param_name(name: &str) -> Result<(), String> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with("pxl_");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "parameter name {name:?}: lowercase letters, digits and '_', not starting with a digit or pxl_"
        ))
    }
}

/// Reads a recipe's declarations. `name` is its file's name without `.sh`. Errors name the
/// recipe and line.
pub fn parse(name: &str, script: &str) -> Result<Recipe, String> {
    check_name(name)?;
    if script.len() > MAX_RECIPE_BYTES {
        return Err(format!(
            "recipe {name}: {} bytes, more than the {MAX_RECIPE_BYTES} a recipe may have",
            script.len()
        ));
    }
    if script.contains('\0') {
        return Err(format!("recipe {name}: holds a NUL byte; a recipe is text"));
    }
    let mut about = None;
    let mut params: Vec<Param> = Vec::new();
    let mut defaults: Vec<(usize, String, String)> = Vec::new();
    for (i, line) in script.lines().enumerate() {
        let at = |msg: String| format!("recipe {name}, line {}: {msg}", i + 1);
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(t) = rest.strip_prefix("recipe:") {
            about = Some(t.trim().to_owned());
        } else if let Some(t) = rest.strip_prefix("param ") {
            let (p, text) = t
                .split_once(':')
                .ok_or_else(|| at("expected `# param NAME: what it is`".into()))?;
            let p = p.trim();
            check_param_name(p).map_err(at)?;
            if params.iter().any(|q| q.name == p) {
                return Err(at(format!("parameter {p} declared twice")));
            }
            params.push(Param {
                name: p.to_owned(),
                about: text.trim().to_owned(),
                default: None,
            });
        } else if let Some(t) = rest.strip_prefix("default ") {
            let (p, v) = t
                .split_once(':')
                .ok_or_else(|| at("expected `# default NAME: value`".into()))?;
            defaults.push((i + 1, p.trim().to_owned(), v.trim().to_owned()));
        }
    }
    for (line, p, v) in defaults {
        match params.iter_mut().find(|q| q.name == p) {
            Some(q) => q.default = Some(v),
            None => {
                return Err(format!(
                    "recipe {name}, line {line}: a default for {p:?}, which no `# param` declares"
                ))
            }
        }
    }
    let about = about
        .ok_or_else(|| format!("recipe {name}: no `# recipe: what it makes so` line at its top"))?;
    for f in ["check", "apply"] {
        let defined = script.lines().any(|l| {
            let l = l.trim_start();
            l.strip_prefix(f)
                .is_some_and(|r| r.trim_start().starts_with("()"))
        });
        if !defined {
            return Err(format!(
                "recipe {name}: no `{f}() {{ … }}` function (a recipe has check and apply)"
            ));
        }
    }
    Ok(Recipe {
        name: name.to_owned(),
        about,
        params,
        script: script.to_owned(),
    })
}

/// `'…'` quoting for sh: the value can hold anything but NUL.
pub fn sh_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

/// The recipe's parameters with the admin's values (`k=v` already split) and the defaults:
/// every declared one needs a value, undeclared ones are refused (a typo would otherwise be
/// silently ignored), values hold no NUL.
pub fn bind(
    recipe: &Recipe,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    for (k, v) in given {
        if !recipe.params.iter().any(|p| &p.name == k) {
            let known: Vec<&str> = recipe.params.iter().map(|p| p.name.as_str()).collect();
            return Err(format!(
                "recipe {}: no parameter {k:?} (it has: {})",
                recipe.name,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ));
        }
        if v.contains('\0') {
            return Err(format!(
                "recipe {}: parameter {k} holds a NUL byte",
                recipe.name
            ));
        }
    }
    let mut out = BTreeMap::new();
    for p in &recipe.params {
        let v = given
            .get(&p.name)
            .cloned()
            .or_else(|| p.default.clone())
            .ok_or_else(|| {
                format!(
                    "recipe {}: parameter {} has no value ({}); give it with --param {}=…",
                    recipe.name, p.name, p.about, p.name
                )
            })?;
        out.insert(p.name.clone(), v);
    }
    Ok(out)
}

/// Splits `--param k=v` arguments.
pub fn parse_params(args: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("--param {a:?}: expected NAME=VALUE"))?;
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(format!("--param {k} given twice"));
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only check: `ok` or `drift`.
    Check,
    /// Check, apply where the check fails, check again: `ok`, `fixed` or `failed`.
    Apply,
}

// The wrapper's exit codes (a recipe's own codes never reach them: check and apply run in
// subshells and only their success counts).
const EXIT_DRIFT: i32 = 10;
const EXIT_APPLY_FAILED: i32 = 11;
const EXIT_FIXED: i32 = 12;
const EXIT_STILL_FAILS: i32 = 13;

/// The script sent to the host (`sh -s` reads it from stdin; no part of it is on a command
/// line): the parameters as quoted assignments, the recipe, then the wrapper.
pub fn remote_script(recipe: &Recipe, params: &BTreeMap<String, String>, mode: Mode) -> String {
    let mut s = String::from("set -u\n");
    for (k, v) in params {
        s.push_str(&format!("{k}={}\n", sh_quote(v)));
    }
    s.push_str(&recipe.script);
    if !recipe.script.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(&match mode {
        Mode::Check => format!("if ( check ); then exit 0; else exit {EXIT_DRIFT}; fi\n"),
        Mode::Apply => format!(
            "if ( check ); then exit 0; fi\n\
             echo '-- check failed: applying'\n\
             ( set -e; apply ) || exit {EXIT_APPLY_FAILED}\n\
             if ( check ); then exit {EXIT_FIXED}; else exit {EXIT_STILL_FAILS}; fi\n"
        ),
    });
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The check passed: nothing to do (nothing was done).
    Ok,
    /// The check failed (check mode: nothing was changed).
    Drift,
    /// The check failed, apply ran, the check passes now.
    Fixed,
    /// Apply failed, or the check still fails after it, or the host could not be reached.
    Failed,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Drift => "drift",
            Outcome::Fixed => "fixed",
            Outcome::Failed => "failed",
        }
    }
}

/// What the wrapper's exit code means, with the reason for a failure.
pub fn outcome(mode: Mode, code: i32) -> (Outcome, Option<String>) {
    match (mode, code) {
        (_, 0) => (Outcome::Ok, None),
        (Mode::Check, EXIT_DRIFT) => (Outcome::Drift, None),
        (Mode::Apply, EXIT_FIXED) => (Outcome::Fixed, None),
        (Mode::Apply, EXIT_APPLY_FAILED) => (Outcome::Failed, Some("apply failed".into())),
        (Mode::Apply, EXIT_STILL_FAILS) => (
            Outcome::Failed,
            Some("applied, but the check still fails".into()),
        ),
        (_, c) => (
            Outcome::Failed,
            Some(format!("the recipe's script ended with exit {c} (a syntax error, or `exit` outside check/apply)")),
        ),
    }
}

/// `recipes.toml` in the conf repo: which recipes hold on which machines.
///
/// ```toml
/// interval_mins = 15          # how often the daemon checks (default 60)
/// [[assign]]
/// recipe = "line-in-file"
/// to = ["reading-room", "kiosk9"]    # groups (param group) and host names
/// params = { file = "/etc/motd", line = "Ask at the desk" }
/// apply = false                       # true: the daemon also fixes drift
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignments {
    pub interval_mins: Option<u64>,
    #[serde(default)]
    pub assign: Vec<Assignment>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    pub recipe: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub apply: bool,
}

impl Assignments {
    /// Minutes between the daemon's checks (at least 1).
    pub fn interval_mins(&self) -> u64 {
        self.interval_mins.unwrap_or(60).max(1)
    }
}

/// Is a check of the assignments due? `last` is when the previous round began.
pub fn due(last: Option<i64>, now: i64, interval_mins: u64) -> bool {
    match last {
        None => true,
        Some(t) => now.saturating_sub(t) >= (interval_mins as i64).saturating_mul(60),
    }
}

/// The recipe `recipe capture` writes for one file: its content embedded (base64), the path
/// and mode as parameters with the captured ones as defaults; check compares the sha256,
/// apply writes a temporary file beside it and renames it over the old one.
pub fn file_recipe(
    source: &str,
    path: &str,
    mode: Option<u32>,
    content: &[u8],
) -> Result<String, String> {
    use base64::Engine;
    use sha2::Digest;
    if content.len() > MAX_CAPTURED_BYTES {
        return Err(format!(
            "{source}: {} bytes; a captured recipe embeds at most {MAX_CAPTURED_BYTES}",
            content.len()
        ));
    }
    if !path.starts_with('/') || path.contains('\n') || path.contains('\0') {
        return Err(format!("{source}: {path:?} is not an absolute path"));
    }
    let sum = super::hex(&sha2::Sha256::digest(content));
    let b64 = base64::engine::general_purpose::STANDARD.encode(content);
    let mut body = String::new();
    for chunk in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        body.push('\n');
    }
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    Ok(format!(
        "# recipe: {path} as captured from {source} (sha256 {sum})\n\
         # param path: where the file goes, an absolute path\n\
         # default path: {path}\n\
         # param mode: its mode, octal\n\
         # default mode: {mode:o}\n\
         # Written by `pxelator recipe capture`; check compares the file's sha256, apply writes\n\
         # it beside the old one and renames it over.\n\
         pxl_sum={sum}\n\
         check() {{\n\
         \x20   [ -f \"$path\" ] && [ \"$(sha256sum < \"$path\" | cut -d' ' -f1)\" = \"$pxl_sum\" ] &&\n\
         \x20   [ \"$(stat -c %a \"$path\")\" = \"$(printf %o \"0$mode\")\" ]\n\
         }}\n\
         apply() {{\n\
         \x20   mkdir -p \"$(dirname \"$path\")\"\n\
         \x20   base64 -d > \"$path.pxelator-new\" <<'PXELATOR_CONTENT'\n\
         {body}PXELATOR_CONTENT\n\
         \x20   chmod \"$mode\" \"$path.pxelator-new\"\n\
         \x20   mv -f \"$path.pxelator-new\" \"$path\"\n\
         }}\n",
        path = one_line(path),
        source = one_line(source),
        mode = mode.unwrap_or(0o644) & 0o7777,
    ))
}

/// The last result of each recipe on a host, as `recipe status` and the machine page show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latest {
    pub host: String,
    pub recipe: String,
    pub outcome: String,
    pub mode: String,
    /// RFC 3339, as the audit store gives it.
    pub time: String,
    /// The admin, or `schedule`.
    pub user: String,
    pub message: Option<String>,
}

/// The newest `recipe_result` per host and recipe, from audit documents sorted newest first;
/// sorted by host, then recipe. Documents of another shape are skipped.
pub fn latest(events: &[serde_json::Value]) -> Vec<Latest> {
    let mut out: Vec<Latest> = Vec::new();
    for e in events {
        let s = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let (Some(host), Some(recipe), Some(outcome)) = (s("host"), s("recipe"), s("outcome"))
        else {
            continue;
        };
        if out.iter().any(|l| l.host == host && l.recipe == recipe) {
            continue;
        }
        out.push(Latest {
            host,
            recipe,
            outcome,
            mode: s("mode").unwrap_or_default(),
            time: s("time").unwrap_or_default(),
            user: s("user").unwrap_or_default(),
            message: s("message"),
        });
    }
    out.sort_by(|a, b| (&a.host, &a.recipe).cmp(&(&b.host, &b.recipe)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "# recipe: a line in a file\n# param file: the file\n# param line: the line\n# default line: hello\ncheck() { grep -qxF -- \"$line\" \"$file\"; }\napply() { printf '%s\\n' \"$line\" >> \"$file\"; }\n";

    /// A script run by a real sh here, as the host's `sh -s` would.
    fn sh(script: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    }

    /// The wrapper script of `r` in `mode` run by a real sh, and what its exit code means.
    fn run_script(
        r: &Recipe,
        params: &BTreeMap<String, String>,
        mode: Mode,
    ) -> (Outcome, Option<String>) {
        let o = sh(&remote_script(r, params, mode));
        outcome(mode, o.status.code().unwrap())
    }

    fn given(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn declarations_are_read_and_checked() {
        let r = parse("line-in-file", LINE).unwrap();
        assert_eq!(r.about, "a line in a file");
        assert_eq!(r.params.len(), 2);
        assert_eq!(r.params[1].default.as_deref(), Some("hello"));
        for (name, script, want) in [
            ("Bad", LINE, "lowercase"),
            ("../../etc/passwd", LINE, "lowercase"),
            ("-rf", LINE, "lowercase"),
            ("x", "check() { :; }\napply() { :; }\n", "no `# recipe:"),
            ("x", "# recipe: y\ncheck() { :; }\n", "no `apply()"),
            (
                "x",
                "# recipe: y\n# param PATH: no\ncheck() { :; }\napply() { :; }\n",
                "line 2: parameter name \"PATH\"",
            ),
            (
                "x",
                "# recipe: y\n# param pxl_sum: no\ncheck() { :; }\napply() { :; }\n",
                "pxl_",
            ),
            (
                "x",
                "# recipe: y\n# default z: 1\ncheck() { :; }\napply() { :; }\n",
                "line 2: a default for \"z\"",
            ),
        ] {
            let e = parse(name, script).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn parameters_need_values_and_declared_names() {
        let r = parse("line-in-file", LINE).unwrap();
        let b = bind(&r, &given(&[("file", "/etc/motd")])).unwrap();
        assert_eq!(b["line"], "hello");
        let e = bind(&r, &BTreeMap::new()).unwrap_err();
        assert!(
            e.contains("parameter file has no value") && e.contains("--param file="),
            "{e}"
        );
        let e = bind(&r, &given(&[("file", "/x"), ("fiel", "y")])).unwrap_err();
        assert!(
            e.contains("no parameter \"fiel\" (it has: file, line)"),
            "{e}"
        );
        assert!(parse_params(&["a=1=2".into()]).unwrap()["a"] == "1=2");
        assert!(parse_params(&["a".into()]).is_err());
    }

    /// A value is data in the script, never code: it runs in a real sh and comes back equal.
    #[test]
    fn values_are_quoted_for_the_shell() {
        let r = parse("line-in-file", LINE).unwrap();
        let evil = "it's $(touch /tmp/pxl-pwned) `id` \"; exit 0\n; rm -rf /";
        let b = bind(&r, &given(&[("file", "/nonexistent"), ("line", evil)])).unwrap();
        let mut s = remote_script(&r, &b, Mode::Check);
        s = s.replace(
            "if ( check )",
            "printf '%s' \"$line\"; exit 0\nif ( check )",
        );
        assert_eq!(String::from_utf8_lossy(&sh(&s).stdout), evil);
    }

    #[test]
    fn exit_codes_mean_outcomes() {
        assert_eq!(outcome(Mode::Check, 0).0, Outcome::Ok);
        assert_eq!(outcome(Mode::Check, 10).0, Outcome::Drift);
        assert_eq!(outcome(Mode::Apply, 12).0, Outcome::Fixed);
        assert_eq!(
            outcome(Mode::Apply, 13).1.unwrap(),
            "applied, but the check still fails"
        );
        // A drift code in apply mode, or anything else, is a failure.
        assert_eq!(outcome(Mode::Apply, 10).0, Outcome::Failed);
        assert_eq!(outcome(Mode::Check, 2).0, Outcome::Failed);
    }

    /// The wrapper's decisions, run by a real sh over a real file: check → apply → check, and
    /// a second apply does nothing.
    #[test]
    fn the_wrapper_applies_only_where_the_check_fails() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("motd");
        std::fs::write(&f, "first\n").unwrap();
        let r = parse("line-in-file", LINE).unwrap();
        let b = bind(&r, &given(&[("file", f.to_str().unwrap())])).unwrap();
        let run = |mode| run_script(&r, &b, mode).0;
        assert_eq!(run(Mode::Check), Outcome::Drift);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "first\n");
        assert_eq!(run(Mode::Apply), Outcome::Fixed);
        assert_eq!(run(Mode::Apply), Outcome::Ok);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "first\nhello\n");
        // An apply that does not satisfy its check is a failure, not "fixed".
        let liar = parse(
            "liar",
            "# recipe: x\ncheck() { false; }\napply() { true; }\n",
        )
        .unwrap();
        assert_eq!(
            run_script(&liar, &BTreeMap::new(), Mode::Apply).0,
            Outcome::Failed
        );
    }

    #[test]
    fn a_captured_file_recipe_writes_the_same_bytes() {
        let d = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..=255u8)
            .chain(b"line\n'$(x)'\nPXELATOR_CONTENT\n".iter().copied())
            .collect();
        let target = d.path().join("sub/etc/file.conf");
        let text = file_recipe(
            "kiosk1:/etc/file.conf@HEAD",
            "/etc/file.conf",
            Some(0o640),
            &content,
        )
        .unwrap();
        let r = parse("file-conf", &text).unwrap();
        let b = bind(&r, &given(&[("path", target.to_str().unwrap())])).unwrap();
        assert_eq!(b["mode"], "640");
        let sh = |mode| run_script(&r, &b, mode);
        assert_eq!(sh(Mode::Check).0, Outcome::Drift);
        assert_eq!(sh(Mode::Apply), (Outcome::Fixed, None));
        assert_eq!(std::fs::read(&target).unwrap(), content);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        assert_eq!(sh(Mode::Apply).0, Outcome::Ok);
        assert!(file_recipe("s", "relative", None, b"x").is_err());
        assert!(file_recipe("s", "/x", None, &vec![0; MAX_CAPTURED_BYTES + 1]).is_err());
    }

    #[test]
    fn the_newest_result_per_host_and_recipe_wins() {
        let ev = |h: &str, r: &str, o: &str, t: &str| serde_json::json!({"kind": "recipe_result", "host": h, "recipe": r, "outcome": o, "time": t, "user": "schedule", "mode": "check"});
        let newest_first = [
            ev("k2", "motd", "drift", "3"),
            ev("k1", "motd", "fixed", "2"),
            ev("k1", "motd", "drift", "1"),
            ev("k1", "ntp", "ok", "1"),
            serde_json::json!({"kind": "recipe_result"}),
        ];
        let l = latest(&newest_first);
        let got: Vec<String> = l
            .iter()
            .map(|x| format!("{} {} {} {}", x.host, x.recipe, x.outcome, x.time))
            .collect();
        assert_eq!(got, ["k1 motd fixed 2", "k1 ntp ok 1", "k2 motd drift 3"]);
    }

    #[test]
    fn assignments_are_due_by_interval() {
        assert!(due(None, 100, 15));
        assert!(!due(Some(100), 100 + 899, 15));
        assert!(due(Some(100), 100 + 900, 15));
    }
}
