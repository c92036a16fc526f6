//! Who may use the API: users with a role, their API tokens and browser sessions.
//!
//! Users live in `<state_dir>/users.toml`, outside the conf repo (git history is readable by
//! every viewer, password hashes must not be), written with mode 0600 and refused when group-
//! or world-readable. Passwords are stored as Argon2id PHC strings; API tokens as the SHA-256
//! of a random 32-byte secret shown once (`pxelator user token`). The CLI and the daemon read
//! the same file; the daemon notices changes by its modification time.
//!
//! The rule of which role may do what is `core::access::required_role` (pure).
//! Sessions ([`Sessions`]) and the login rate limit ([`LoginLimiter`]) are in memory: a daemon
//! restart logs everyone out, which is the safe direction.
pub use crate::core::access::{required_role, Access, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("users file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "users file {path}: {msg} (it is written by `pxelator user`; fix or remove the entry)"
    )]
    Parse { path: PathBuf, msg: String },
    #[error("users file {path} is readable by group or others (mode {mode:o}); it holds password hashes: chmod 600 {path}")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "{0:?} is not a valid user name: 1-32 of a-z, 0-9, '_', '.', '-', starting with a letter"
    )]
    BadName(String),
    #[error(
        "{0:?} is not an e-mail address for commits (one user@domain, no <>, quotes or commas)"
    )]
    BadEmail(String),
    #[error("user {0:?} exists already (`pxelator user passwd` changes the password)")]
    Exists(String),
    #[error("no user {0:?} (`pxelator user list` shows them)")]
    NoUser(String),
    #[error("the password must have at least {MIN_PASSWORD} characters")]
    ShortPassword,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

pub const MIN_PASSWORD: usize = 10;

/// One API token as stored: only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub label: String,
    pub sha256: String,
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    /// Argon2id PHC string.
    pub password: String,
    /// For the commits this user makes from the web UI (`Name <email>`); default
    /// `<name>@<this host>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenRecord>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<UserRecord>,
}

/// Who made a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub user: String,
    pub role: Role,
    pub email: Option<String>,
}

impl Who {
    /// The commit author for changes this user makes through the daemon (web UI, API).
    pub fn author(&self) -> crate::confrepo::Author {
        crate::confrepo::Author {
            name: self.user.clone(),
            email: self
                .email
                .clone()
                .unwrap_or_else(|| format!("{}@{}", self.user, crate::confrepo::host_name())),
        }
    }
}

/// What `user list` shows: never a hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserSummary {
    pub name: String,
    pub role: Role,
    pub tokens: Vec<String>,
}

/// The users file, loaded.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    file: UsersFile,
}

/// Where the users file is.
pub fn users_path(state_dir: &Path) -> PathBuf {
    state_dir.join("users.toml")
}

pub fn valid_user_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
}

fn sha256_hex(data: &[u8]) -> String {
    crate::proto::hex(&Sha256::digest(data))
}

/// `n` random bytes from the OS, hex-encoded.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random source is available");
    crate::proto::hex(&b)
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    if password.chars().count() < MIN_PASSWORD {
        return Err(AuthError::ShortPassword);
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS random source is available");
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

impl Users {
    /// No users at all: nobody can log in.
    pub fn empty() -> Users {
        Users {
            path: PathBuf::new(),
            file: UsersFile::default(),
        }
    }

    /// Loads the users file (none yet: no users). Refuses a file others can read.
    pub fn load(path: &Path) -> Result<Users, AuthError> {
        use std::os::unix::fs::MetadataExt;
        let io = |source| AuthError::Io {
            path: path.to_owned(),
            source,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Users {
                    path: path.to_owned(),
                    file: UsersFile::default(),
                })
            }
            Err(e) => return Err(io(e)),
        };
        let mode = std::fs::metadata(path).map_err(io)?.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuthError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let file: UsersFile =
            crate::tomlfile::parse(path, &text).map_err(|e| AuthError::Parse {
                path: path.to_owned(),
                msg: match e.line {
                    Some(l) => format!("line {l}: {}", e.message),
                    None => e.message,
                },
            })?;
        Ok(Users {
            path: path.to_owned(),
            file,
        })
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self) -> Result<(), AuthError> {
        let text = toml::to_string(&self.file).map_err(|e| AuthError::Parse {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        crate::fsutil::write_private(&self.path, text.as_bytes()).map_err(|source| AuthError::Io {
            path: self.path.clone(),
            source,
        })
    }

    pub fn list(&self) -> Vec<UserSummary> {
        self.file
            .users
            .iter()
            .map(|u| UserSummary {
                name: u.name.clone(),
                role: u.role,
                tokens: u.tokens.iter().map(|t| t.label.clone()).collect(),
            })
            .collect()
    }

    fn find_mut(&mut self, name: &str) -> Result<&mut UserRecord, AuthError> {
        self.file
            .users
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| AuthError::NoUser(name.to_owned()))
    }

    pub fn add(&mut self, name: &str, role: Role, password: &str) -> Result<(), AuthError> {
        if !valid_user_name(name) {
            return Err(AuthError::BadName(name.to_owned()));
        }
        if self.file.users.iter().any(|u| u.name == name) {
            return Err(AuthError::Exists(name.to_owned()));
        }
        self.file.users.push(UserRecord {
            name: name.to_owned(),
            role,
            password: hash_password(password)?,
            email: None,
            tokens: Vec::new(),
        });
        Ok(())
    }

    /// Sets the e-mail address a user's commits carry.
    pub fn set_email(&mut self, name: &str, email: &str) -> Result<(), AuthError> {
        let ok = email.len() <= 254
            && email
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
            && email
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"<>\"'\\,;".contains(&b));
        if !ok {
            return Err(AuthError::BadEmail(email.to_owned()));
        }
        self.find_mut(name)?.email = Some(email.to_owned());
        Ok(())
    }

    pub fn passwd(&mut self, name: &str, password: &str) -> Result<(), AuthError> {
        let hash = hash_password(password)?;
        self.find_mut(name)?.password = hash;
        Ok(())
    }

    pub fn set_role(&mut self, name: &str, role: Role) -> Result<(), AuthError> {
        self.find_mut(name)?.role = role;
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<(), AuthError> {
        let before = self.file.users.len();
        self.file.users.retain(|u| u.name != name);
        if self.file.users.len() == before {
            return Err(AuthError::NoUser(name.to_owned()));
        }
        Ok(())
    }

    /// A new API token for `name`: returned once, only its hash is kept.
    pub fn new_token(&mut self, name: &str, label: &str, now: &str) -> Result<String, AuthError> {
        let token = format!("pxl_{}", random_hex(32));
        self.find_mut(name)?.tokens.push(TokenRecord {
            label: label.to_owned(),
            sha256: sha256_hex(token.as_bytes()),
            created: now.to_owned(),
        });
        Ok(token)
    }

    /// Removes the tokens of `name` labelled `label`; how many.
    pub fn revoke_token(&mut self, name: &str, label: &str) -> Result<usize, AuthError> {
        let u = self.find_mut(name)?;
        let before = u.tokens.len();
        u.tokens.retain(|t| t.label != label);
        Ok(before - u.tokens.len())
    }

    /// The user a password belongs to. Argon2 makes this deliberately slow (tens of ms).
    pub fn verify_password(&self, name: &str, password: &str) -> Option<Who> {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let u = self.file.users.iter().find(|u| u.name == name)?;
        let parsed = PasswordHash::new(&u.password).ok()?;
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .ok()?;
        Some(Who {
            user: u.name.clone(),
            role: u.role,
            email: u.email.clone(),
        })
    }

    /// The user an API token belongs to. The lookup is by the token's hash, so its time
    /// says nothing about how much of a guess was right.
    pub fn verify_token(&self, token: &str) -> Option<Who> {
        let h = sha256_hex(token.as_bytes());
        self.file.users.iter().find_map(|u| {
            u.tokens.iter().any(|t| t.sha256 == h).then(|| Who {
                user: u.name.clone(),
                role: u.role,
                email: u.email.clone(),
            })
        })
    }
}

/// A browser session.
#[derive(Debug, Clone)]
pub struct Session {
    pub who: Who,
    /// Sent back in `X-CSRF-Token` on every write made with this session's cookie.
    pub csrf: String,
    pub expires_ms: i64,
}

/// Sessions by the SHA-256 of their cookie value; bounded in number.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
const MAX_SESSIONS: usize = 10_000;

impl Sessions {
    /// Starts a session: the cookie value to set and the session.
    pub fn start(&self, who: Who, now_ms: i64) -> (String, Session) {
        let id = random_hex(32);
        let s = Session {
            who,
            csrf: random_hex(16),
            expires_ms: now_ms + SESSION_TTL_MS,
        };
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, v| v.expires_ms > now_ms);
        if map.len() >= MAX_SESSIONS {
            // Full of live sessions: the one closest to expiry goes.
            if let Some(k) = map
                .iter()
                .min_by_key(|(_, v)| v.expires_ms)
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
        map.insert(sha256_hex(id.as_bytes()), s.clone());
        (id, s)
    }

    pub fn get(&self, cookie: &str, now_ms: i64) -> Option<Session> {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&sha256_hex(cookie.as_bytes()))
            .filter(|s| s.expires_ms > now_ms)
            .cloned()
    }

    pub fn end(&self, cookie: &str) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(&sha256_hex(cookie.as_bytes()));
    }

    /// Ends every session of `user` whose role is no longer `role` (or who is gone).
    pub fn retain_valid(&self, users: &Users) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, s| {
            users
                .file
                .users
                .iter()
                .any(|u| u.name == s.who.user && u.role == s.who.role)
        });
    }
}

/// Failed logins per source address: at most [`LoginLimiter::MAX_FAILURES`] a minute.
#[derive(Default)]
pub struct LoginLimiter {
    map: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl LoginLimiter {
    pub const MAX_FAILURES: u32 = 5;
    const WINDOW_MS: i64 = 60_000;
    const MAX_SOURCES: usize = 10_000;

    /// Seconds until `ip` may try again, if it is blocked now.
    pub fn blocked(&self, ip: IpAddr, now_ms: i64) -> Option<u64> {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let &(start, n) = map.get(&ip)?;
        (n >= Self::MAX_FAILURES && now_ms - start < Self::WINDOW_MS)
            .then(|| ((start + Self::WINDOW_MS - now_ms + 999) / 1000) as u64)
    }

    pub fn failed(&self, ip: IpAddr, now_ms: i64) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= Self::MAX_SOURCES {
            map.retain(|_, (start, _)| now_ms - *start < Self::WINDOW_MS);
        }
        let e = map.entry(ip).or_insert((now_ms, 0));
        if now_ms - e.0 >= Self::WINDOW_MS {
            *e = (now_ms, 0);
        }
        e.1 += 1;
    }

    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn users_file_round_trip_is_private_and_hashes_only() {
        let d = tempfile::tempdir().unwrap();
        let p = users_path(d.path());
        let mut u = Users::load(&p).unwrap();
        u.add("alice", Role::Admin, "correct horse battery")
            .unwrap();
        assert!(matches!(
            u.add("alice", Role::Viewer, "x".repeat(12).as_str()),
            Err(AuthError::Exists(_))
        ));
        assert!(matches!(
            u.add("Bob", Role::Viewer, "long enough pw"),
            Err(AuthError::BadName(_))
        ));
        assert!(matches!(
            u.add("bob", Role::Viewer, "short"),
            Err(AuthError::ShortPassword)
        ));
        let token = u
            .new_token("alice", "script", "2026-11-30T00:00:00Z")
            .unwrap();
        u.save().unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            !text.contains("correct horse") && !text.contains(&token),
            "{text}"
        );
        let u = Users::load(&p).unwrap();
        assert_eq!(
            u.verify_password("alice", "correct horse battery")
                .unwrap()
                .role,
            Role::Admin
        );
        assert!(u.verify_password("alice", "wrong password!").is_none());
        assert_eq!(u.verify_token(&token).unwrap().user, "alice");
        assert!(u.verify_token("pxl_00").is_none());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Users::load(&p).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn login_limiter_blocks_after_five_failures_a_minute() {
        let l = LoginLimiter::default();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        for _ in 0..LoginLimiter::MAX_FAILURES {
            assert_eq!(l.blocked(ip, 1_000), None);
            l.failed(ip, 1_000);
        }
        assert_eq!(l.blocked(ip, 1_000), Some(60));
        assert_eq!(l.blocked(ip, 61_000), None, "the window passed");
        assert_eq!(l.blocked("10.0.0.8".parse().unwrap(), 1_000), None);
    }

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::default();
        let who = Who {
            user: "alice".into(),
            role: Role::Viewer,
            email: None,
        };
        let (cookie, sess) = s.start(who.clone(), 0);
        assert_eq!(s.get(&cookie, 1).unwrap().csrf, sess.csrf);
        assert!(s.get(&cookie, SESSION_TTL_MS + 1).is_none());
        s.end(&cookie);
        assert!(s.get(&cookie, 1).is_none());
        assert!(s.get("forged", 1).is_none());
    }
}
