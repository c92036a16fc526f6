//! The one TOML loader: every TOML file pxelator reads (the config, inventory files,
//! backup.toml, power.toml, users.toml, image.toml) is parsed here, so every parse error names
//! the file and the line the same way: `path:line: message`.
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// A TOML file that could not be read or parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TomlError {
    pub path: PathBuf,
    /// 1-based, when the parser could say where.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for TomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for TomlError {}

/// Parses `text`, the contents of `path` (which only names it in errors).
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, TomlError> {
    toml::from_str(text).map_err(|e| TomlError {
        path: path.to_owned(),
        line: line_of(text, &e),
        message: e.message().trim_end().to_owned(),
    })
}

/// Reads and parses `path`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, TomlError> {
    let text = std::fs::read_to_string(path).map_err(|e| TomlError {
        path: path.to_owned(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// The 1-based line a parse error points at.
pub fn line_of(text: &str, e: &toml::de::Error) -> Option<usize> {
    e.span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct F {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let p = Path::new("/srv/conf/machines/k.toml");
        let e = parse::<F>(p, "# one\na = 1\nb = 2\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(
            e.to_string()
                .starts_with("/srv/conf/machines/k.toml:3: unknown field `b`"),
            "{e}"
        );
        let e = parse::<F>(p, "a = \"x\"\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        let e = read::<F>(Path::new("/nonexistent/x.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/x.toml: cannot read:"),
            "{e}"
        );
    }
}
