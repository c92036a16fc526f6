//! `pxelator setup --interactive`: the same [`SetupFile`] as setup.toml, asked for on a console
//! one question at a time, each with a default detected from the NICs (Enter takes it). Every
//! answer is checked where it is given, with the reason and the question again; end of input
//! cancels without writing anything. The flow is a function of a reader and a writer, so tests
//! drive it with text and the console unit with the tty.
use super::{authorized_keys, parse_cidr, pick_interface, SetupFile};
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;

/// What the machine offers as defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    pub interface: String,
    /// `a.b.c.d/len`.
    pub address: String,
    pub pool: [Ipv4Addr; 2],
}

/// A default pool for `address`: .100–.199 of the network when it is that big, else the
/// upper half of it (never the server's own address).
pub fn pool_for(address: &str) -> Result<[Ipv4Addr; 2], String> {
    let (ip, net, len) = parse_cidr(address)?;
    let size = 1u32 << (32 - u32::from(len));
    let base = u32::from(net);
    let (lo, hi) = if size >= 256 {
        (base + 100, base + 199)
    } else {
        (base + size / 2, base + size - 2)
    };
    let (lo, hi) = if (lo..=hi).contains(&u32::from(ip)) {
        (lo.max(u32::from(ip) + 1), hi)
    } else {
        (lo, hi)
    };
    if lo > hi {
        return Err(format!("{address}: no room for a pool beside the server"));
    }
    Ok([Ipv4Addr::from(lo), Ipv4Addr::from(hi)])
}

/// Defaults from the interfaces present (`(name, Some("a.b.c.d/len"))` when one has an IPv4
/// address already): the chosen interface's address, or 192.168.100.1/24.
pub fn suggest(present: &[(String, Option<String>)]) -> Result<Suggestion, String> {
    let names: Vec<String> = present.iter().map(|(n, _)| n.clone()).collect();
    let interface = pick_interface(None, &names)?;
    let address = present
        .iter()
        .find(|(n, _)| *n == interface)
        .and_then(|(_, a)| a.clone())
        .filter(|a| parse_cidr(a).is_ok())
        .unwrap_or_else(|| "192.168.100.1/24".to_string());
    let pool = pool_for(&address)?;
    Ok(Suggestion {
        interface,
        address,
        pool,
    })
}

/// How many times a question is asked before setup gives up.
const TRIES: usize = 5;

struct Asker<'a> {
    input: &'a mut dyn BufRead,
    out: &'a mut dyn Write,
    secret: &'a mut dyn FnMut(&mut dyn BufRead) -> std::io::Result<Option<String>>,
}

impl Asker<'_> {
    fn line(&mut self) -> Result<String, String> {
        let mut s = String::new();
        match self.input.read_line(&mut s) {
            Ok(0) => Err("setup cancelled (end of input); nothing was written".into()),
            Ok(_) => Ok(s.trim().to_string()),
            Err(e) => Err(format!("reading the answer: {e}")),
        }
    }

    fn say(&mut self, text: &str) {
        let _ = write!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// Asks until `check` accepts the answer (Enter: the default).
    fn ask<T>(
        &mut self,
        q: &str,
        default: Option<&str>,
        check: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, String> {
        for _ in 0..TRIES {
            match default {
                Some(d) if !d.is_empty() => self.say(&format!("{q} [{d}]: ")),
                _ => self.say(&format!("{q}: ")),
            }
            let a = self.line()?;
            let a = if a.is_empty() {
                default.unwrap_or("").to_string()
            } else {
                a
            };
            match check(&a) {
                Ok(v) => return Ok(v),
                Err(e) => self.say(&format!("  {e}\n")),
            }
        }
        Err(format!(
            "{q}: no usable answer after {TRIES} tries; nothing was written"
        ))
    }

    fn password(&mut self) -> Result<String, String> {
        for _ in 0..TRIES {
            self.say(&format!(
                "Admin password (at least {} characters): ",
                crate::auth::MIN_PASSWORD
            ));
            let a = (self.secret)(self.input)
                .map_err(|e| e.to_string())?
                .ok_or("setup cancelled (end of input); nothing was written")?;
            self.say("\n");
            if a.chars().count() < crate::auth::MIN_PASSWORD {
                self.say(&format!(
                    "  at least {} characters\n",
                    crate::auth::MIN_PASSWORD
                ));
                continue;
            }
            self.say("Again: ");
            let b = (self.secret)(self.input)
                .map_err(|e| e.to_string())?
                .ok_or("setup cancelled (end of input); nothing was written")?;
            self.say("\n");
            if a == b {
                return Ok(a);
            }
            self.say("  the two differ\n");
        }
        Err(format!(
            "admin password: no usable answer after {TRIES} tries; nothing was written"
        ))
    }
}

/// The questions. `secret` reads a password (without echo on a tty); None at end of input.
pub fn ask(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    present: &[String],
    s: &Suggestion,
    secret: &mut dyn FnMut(&mut dyn BufRead) -> std::io::Result<Option<String>>,
) -> Result<SetupFile, String> {
    let mut a = Asker { input, out, secret };
    a.say("pxelator setup: no setup.toml was found on PXL-SETUP. Answer each question; Enter takes the [default].\n");
    let interface = a.ask("Interface facing the machines", Some(&s.interface), |v| {
        pick_interface(Some(v), present)
    })?;
    let address = a.ask(
        "This server's address with its prefix",
        Some(&s.address),
        |v| parse_cidr(v).map(|_| v.to_string()),
    )?;
    let pool_default = pool_for(&address)
        .map(|[l, h]| format!("{l}-{h}"))
        .unwrap_or_default();
    let pool = a.ask(
        "Addresses for unknown machines (first-last)",
        Some(&pool_default),
        |v| {
            let (l, h) = v
                .split_once('-')
                .ok_or("give it as first-last, e.g. 10.0.0.100-10.0.0.199")?;
            let l: Ipv4Addr = l
                .trim()
                .parse()
                .map_err(|_| format!("{l:?} is not an IPv4 address"))?;
            let h: Ipv4Addr = h
                .trim()
                .parse()
                .map_err(|_| format!("{h:?} is not an IPv4 address"))?;
            Ok([l, h])
        },
    )?;
    let admin = a.ask("Admin user", Some("admin"), |v| {
        if crate::auth::valid_user_name(v) {
            Ok(v.to_string())
        } else {
            Err(format!(
                "{v:?}: 1-32 of a-z, 0-9, '_', '.', '-', starting with a letter"
            ))
        }
    })?;
    let admin_password = a.password()?;
    let keys = a.ask("An ssh public key for root (optional)", None, |v| {
        if v.is_empty() {
            return Ok(Vec::new());
        }
        let k = vec![v.to_string()];
        authorized_keys(&k)
            .map(|_| k)
            .map_err(|e| e.replace("ssh_authorized_keys[0]: ", ""))
    })?;
    Ok(SetupFile {
        interface: Some(interface),
        address,
        pool: Some(pool),
        router: None,
        dns: Vec::new(),
        admin,
        admin_password,
        ssh_authorized_keys: keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(i: &mut dyn BufRead) -> std::io::Result<Option<String>> {
        let mut s = String::new();
        Ok((i.read_line(&mut s)? > 0).then(|| s.trim_end_matches(['\r', '\n']).to_string()))
    }

    fn run(answers: &str) -> (Result<SetupFile, String>, String) {
        let present = vec!["enp1s0".to_string(), "lo".into()];
        let s = suggest(&[
            ("enp1s0".into(), None),
            ("lo".into(), Some("127.0.0.1/8".into())),
        ])
        .unwrap();
        let mut input = std::io::Cursor::new(answers.as_bytes().to_vec());
        let mut out = Vec::new();
        let r = ask(&mut input, &mut out, &present, &s, &mut plain);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn enter_everywhere_takes_the_detected_defaults() {
        let (r, out) = run("\n\n\n\nlibrary-pw-2026\nlibrary-pw-2026\n\n");
        let f = r.unwrap();
        assert_eq!(f.interface.as_deref(), Some("enp1s0"));
        assert_eq!(f.address, "192.168.100.1/24");
        assert_eq!(
            f.pool,
            Some([
                "192.168.100.100".parse().unwrap(),
                "192.168.100.199".parse().unwrap()
            ])
        );
        assert_eq!(f.admin, "admin");
        assert!(f.ssh_authorized_keys.is_empty());
        assert!(
            out.contains("Interface facing the machines [enp1s0]: "),
            "{out}"
        );
    }

    #[test]
    fn bad_answers_are_explained_and_asked_again() {
        let (r, out) = run("eth9\n\n10.5.5.1\n10.5.5.1/24\n\nBad Name\nlib\nshort\nlong-enough-1\nlong-enough-2\nlong-enough-1\nlong-enough-1\ncommand=\"x\" ssh-ed25519 AAAA\n\n");
        let f = r.unwrap();
        assert!(out.contains("\"eth9\" does not exist here"), "{out}");
        assert!(out.contains("needs a prefix length"), "{out}");
        assert!(
            out.contains("at least 10 characters") && out.contains("the two differ"),
            "{out}"
        );
        assert!(out.contains("not one OpenSSH public key"), "{out}");
        assert_eq!(f.address, "10.5.5.1/24");
        assert_eq!(
            f.pool,
            Some(["10.5.5.100".parse().unwrap(), "10.5.5.199".parse().unwrap()])
        );
        assert_eq!(f.admin, "lib");
        assert_eq!(f.admin_password, "long-enough-1");
    }

    #[test]
    fn end_of_input_cancels() {
        let (r, _) = run("\n\n");
        assert!(r.unwrap_err().contains("cancelled"));
        assert_eq!(
            pool_for("10.0.0.1/28").unwrap(),
            [
                "10.0.0.8".parse::<Ipv4Addr>().unwrap(),
                "10.0.0.14".parse().unwrap()
            ]
        );
        assert_eq!(
            pool_for("10.0.0.150/24").unwrap()[0],
            "10.0.0.151".parse::<Ipv4Addr>().unwrap()
        );
    }
}
