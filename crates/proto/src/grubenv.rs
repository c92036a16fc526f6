//! GRUB's environment block (`grubenv`, what `load_env`/`save_env` and `grub-editenv` read and
//! write): exactly 1024 bytes, the header line, `name=value` lines, `#` padding. GRUB rewrites
//! the file in place, so its size must never change; `render` always yields 1024 bytes.
use thiserror::Error;

pub const SIZE: usize = 1024;
const HEADER: &str = "# GRUB Environment Block\n";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("not a GRUB environment block: {0}")]
    Malformed(String),
    #[error("GRUB environment variable {0:?}: names are letters, digits and _ only")]
    BadName(String),
    #[error("GRUB environment value {0:?}: printable ASCII without \\ only")]
    BadValue(String),
    #[error("GRUB environment block would exceed {SIZE} bytes")]
    TooBig,
}

/// The variables of a block, in file order.
pub fn parse(block: &[u8]) -> Result<Vec<(String, String)>, EnvError> {
    if block.len() != SIZE {
        return Err(EnvError::Malformed(format!(
            "{} bytes, not {SIZE}",
            block.len()
        )));
    }
    let text = std::str::from_utf8(block).map_err(|_| EnvError::Malformed("not UTF-8".into()))?;
    let body = text
        .strip_prefix(HEADER)
        .ok_or_else(|| EnvError::Malformed("no header line".into()))?;
    let mut vars = Vec::new();
    for line in body.split('\n') {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, raw) = line
            .split_once('=')
            .ok_or_else(|| EnvError::Malformed(format!("line {line:?} has no '='")))?;
        // grub-editenv escapes '\' and newline with a backslash; undo it.
        let mut value = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            value.push(if c == '\\' {
                chars.next().unwrap_or('\\')
            } else {
                c
            });
        }
        vars.push((name.to_string(), value));
    }
    Ok(vars)
}

/// A 1024-byte block holding `vars`.
pub fn render(vars: &[(String, String)]) -> Result<Vec<u8>, EnvError> {
    let mut out = String::from(HEADER);
    for (name, value) in vars {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(EnvError::BadName(name.clone()));
        }
        if !value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
        {
            return Err(EnvError::BadValue(value.clone()));
        }
        out.push_str(&format!("{name}={value}\n"));
    }
    if out.len() > SIZE {
        return Err(EnvError::TooBig);
    }
    let mut block = out.into_bytes();
    block.resize(SIZE, b'#');
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn round_trips_in_1024_bytes() {
        let vars = v(&[
            ("slot", "A"),
            ("try_slot", ""),
            ("version_A", "v1.2-3-gabc"),
        ]);
        let block = render(&vars).unwrap();
        assert_eq!(block.len(), SIZE);
        assert!(block.starts_with(b"# GRUB Environment Block\nslot=A\ntry_slot=\n"));
        assert_eq!(*block.last().unwrap(), b'#');
        assert_eq!(parse(&block).unwrap(), vars);
    }

    #[test]
    fn reads_what_grub_editenv_escapes() {
        let mut b = b"# GRUB Environment Block\nx=a\\\\b\n".to_vec();
        b.resize(SIZE, b'#');
        assert_eq!(parse(&b).unwrap(), v(&[("x", "a\\b")]));
    }

    #[test]
    fn refuses_what_could_inject_a_line_or_overflow() {
        assert!(matches!(
            render(&v(&[("slot", "A\ntry_slot=B")])),
            Err(EnvError::BadValue(_))
        ));
        assert!(matches!(
            render(&v(&[("a=b", "x")])),
            Err(EnvError::BadName(_))
        ));
        let long = "x".repeat(SIZE);
        assert_eq!(render(&v(&[("big", &long)])), Err(EnvError::TooBig));
        assert!(parse(&[b'#'; SIZE]).is_err());
        assert!(parse(b"# GRUB Environment Block\n").is_err());
    }
}
