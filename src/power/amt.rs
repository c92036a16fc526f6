//! Intel AMT power control over WS-Management (DMTF DSP0226 over SOAP 1.2, HTTP digest auth on
//! port 16992).
//!
//! Two messages, as the Intel AMT SDK documents them:
//! - reading the power state: a WS-Transfer `Get` of `CIM_AssociatedPowerManagementService`,
//!   whose answer carries `PowerState` (2 on, 3/4 sleep, 6/8/13 off, 7 hibernate, …);
//! - changing it: `RequestPowerStateChange` on `CIM_PowerManagementService` ("Intel(r) AMT
//!   Power Management Service") for the `CIM_ComputerSystem` "ManagedSystem", with the CIM
//!   values 2 (on), 8 (off, soft) and 10 (master bus reset); `ReturnValue` 0 means accepted.
//!
//! Building the messages and reading the answers are pure functions; [`Client`] carries them
//! over HTTP (ureq) with the digest challenge answered by the `digest_auth` crate. With
//! `[amt] tls = true` it talks HTTPS on 16993 instead, the certificate pinned on first use
//! ([`super::amt_tls`]).
use std::time::Duration;

const CIM: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/";
const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";

/// `[amt]` in power.toml: credentials for every machine with an `amt` param.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmtConfig {
    /// Default "admin".
    pub user: Option<String>,
    /// A file on the appliance holding the password (keeps it out of the conf repo).
    pub password_file: Option<std::path::PathBuf>,
    /// The password itself (it is then in git: prefer password_file).
    pub password: Option<String>,
    /// Default 16992, or 16993 with `tls`.
    pub port: Option<u16>,
    /// HTTPS (AMT's TLS port 16993) with the certificate pinned on first use in
    /// `<state_dir>/amt/known_certs`; default false (plain HTTP, the digest exchange visible
    /// on the wire).
    pub tls: Option<bool>,
    /// Seconds per request, default 10.
    pub timeout_secs: Option<u64>,
    /// Where pinned certificates are kept (set from the config's state_dir, not from TOML).
    #[serde(skip)]
    pub known_certs: Option<std::path::PathBuf>,
}

/// What to ask AMT for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    On,
    Off,
    Reset,
}

impl Change {
    /// The CIM_PowerManagementService.RequestPowerStateChange PowerState value.
    pub fn cim_value(self) -> u16 {
        match self {
            Change::On => 2,
            Change::Off => 8,
            Change::Reset => 10,
        }
    }
}

/// A readable name for a CIM PowerState value as AMT reports it.
pub fn state_name(v: u16) -> &'static str {
    match v {
        2 => "on",
        3 => "sleep (light)",
        4 => "sleep (deep)",
        5 => "power cycle (off soft)",
        6 => "off (hard)",
        7 => "hibernate",
        8 => "off (soft)",
        9 => "power cycle (off hard)",
        10 => "master bus reset",
        12 => "off (soft, graceful)",
        13 => "off (hard, graceful)",
        14 => "master bus reset (graceful)",
        _ => "unknown",
    }
}

fn envelope(
    to: &str,
    action: &str,
    resource: &str,
    selectors: &str,
    body: &str,
    id: u64,
) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\">\
<s:Header>\
<a:Action s:mustUnderstand=\"true\">{action}</a:Action>\
<a:To s:mustUnderstand=\"true\">{to}</a:To>\
<w:ResourceURI s:mustUnderstand=\"true\">{resource}</w:ResourceURI>\
<a:MessageID s:mustUnderstand=\"true\">uuid:00000000-8086-4000-8000-{id:012x}</a:MessageID>\
<a:ReplyTo><a:Address>{ANONYMOUS}</a:Address></a:ReplyTo>\
<w:OperationTimeout>PT60S</w:OperationTimeout>{selectors}\
</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
}

/// The WS-Transfer Get that reads the power state.
pub fn power_state_request(to: &str, id: u64) -> String {
    envelope(
        to,
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get",
        &format!("{CIM}CIM_AssociatedPowerManagementService"),
        "",
        "",
        id,
    )
}

/// The RequestPowerStateChange invocation.
pub fn power_change_request(to: &str, change: Change, id: u64) -> String {
    let service = format!("{CIM}CIM_PowerManagementService");
    let selectors = "<w:SelectorSet>\
<w:Selector Name=\"CreationClassName\">CIM_PowerManagementService</w:Selector>\
<w:Selector Name=\"Name\">Intel(r) AMT Power Management Service</w:Selector>\
<w:Selector Name=\"SystemCreationClassName\">CIM_ComputerSystem</w:Selector>\
<w:Selector Name=\"SystemName\">Intel(r) AMT</w:Selector>\
</w:SelectorSet>";
    let body = format!(
        "<p:RequestPowerStateChange_INPUT xmlns:p=\"{service}\">\
<p:PowerState>{}</p:PowerState>\
<p:ManagedElement><a:Address>{ANONYMOUS}</a:Address>\
<a:ReferenceParameters><w:ResourceURI>{CIM}CIM_ComputerSystem</w:ResourceURI>\
<w:SelectorSet><w:Selector Name=\"CreationClassName\">CIM_ComputerSystem</w:Selector>\
<w:Selector Name=\"Name\">ManagedSystem</w:Selector></w:SelectorSet>\
</a:ReferenceParameters></p:ManagedElement></p:RequestPowerStateChange_INPUT>",
        change.cim_value()
    );
    envelope(
        to,
        &format!("{service}/RequestPowerStateChange"),
        &service,
        selectors,
        &body,
        id,
    )
}

/// The text of the first element whose local name is `name` (namespace prefixes ignored).
pub fn element_text(xml: &str, name: &str) -> Option<String> {
    use quick_xml::events::Event as X;
    let mut r = quick_xml::Reader::from_str(xml);
    let mut inside = false;
    loop {
        match r.read_event().ok()? {
            X::Start(e) if AsRef::<str>::as_ref(&e.local_name()) == name => inside = true,
            X::Text(t) if inside => return Some(t.xml10_content().trim().to_owned()),
            X::End(_) if inside => return Some(String::new()),
            X::Eof => return None,
            _ => {}
        }
    }
}

/// A SOAP fault's reason, if the answer is one.
fn fault(xml: &str) -> Option<String> {
    element_text(xml, "Fault")?;
    Some(
        element_text(xml, "Text")
            .or_else(|| element_text(xml, "Value"))
            .unwrap_or_else(|| "a SOAP fault without a reason".into()),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum AmtError {
    #[error("cannot reach AMT at {url}: {reason}; is the machine plugged in and AMT provisioned (and the address in its amt param right)?")]
    Unreachable { url: String, reason: String },
    #[error("AMT at {url} refused user {user:?} (HTTP 401): check [amt] user and password_file in power.toml")]
    Refused { url: String, user: String },
    #[error("AMT at {url} answered HTTP {status}: {text}")]
    Http {
        url: String,
        status: u16,
        text: String,
    },
    #[error("AMT at {url} answered with a fault: {reason}")]
    Fault { url: String, reason: String },
    #[error("AMT at {url} refused PowerState {value} ({name}): ReturnValue {code}{hint}")]
    NotAccepted {
        url: String,
        value: u16,
        name: &'static str,
        code: String,
        hint: &'static str,
    },
    #[error("AMT at {url}: {what} missing from the answer")]
    Malformed { url: String, what: &'static str },
    #[error("[amt] in power.toml: {0}")]
    Config(String),
    #[error("AMT at {url} presented certificate SHA256 {seen}, not the one pinned for {endpoint} in {file} ({pinned}): refused. If this AMT was re-provisioned, delete its line from {file} and try again")]
    CertChanged {
        url: String,
        endpoint: String,
        file: String,
        pinned: String,
        seen: String,
    },
}

/// One AMT endpoint with its credentials.
pub struct Client {
    pub url: String,
    user: String,
    password: String,
    agent: ureq::Agent,
    next_id: std::cell::Cell<u64>,
    /// With TLS: the pin store, the endpoint's name in it, its pin (None before the first
    /// use) and the certificate the last handshake saw.
    tls: Option<TlsPin>,
}

struct TlsPin {
    store: super::amt_tls::PinStore,
    endpoint: String,
    pinned: Option<super::amt_tls::Fingerprint>,
    seen: std::sync::Arc<std::sync::Mutex<Option<super::amt_tls::Fingerprint>>>,
}

impl Client {
    /// `address` is "host" or "host:port"; the port defaults to [amt] port or 16992.
    pub fn new(address: &str, cfg: &AmtConfig) -> Result<Client, AmtError> {
        let password = match (&cfg.password_file, &cfg.password) {
            (Some(f), _) => crate::fsutil::read_secret(f)
                .map_err(|e| AmtError::Config(format!("password_file {e}")))?,
            (None, Some(p)) => p.clone(),
            (None, None) => {
                return Err(AmtError::Config(
                    "no password: set password_file = \"/etc/pxelator/amt-password\"".into(),
                ))
            }
        };
        let tls = cfg.tls.unwrap_or(false);
        let hostport = if address.contains(':') {
            address.to_owned()
        } else {
            let port = cfg.port.unwrap_or(if tls { 16993 } else { 16992 });
            format!("{address}:{port}")
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(cfg.timeout_secs.unwrap_or(10))))
            .http_status_as_error(false)
            .build();
        let (agent, pin, scheme) = if tls {
            use ureq::unversioned::{resolver::DefaultResolver, transport::*};
            let file = cfg.known_certs.clone().ok_or_else(|| {
                AmtError::Config("tls = true needs a place to pin certificates (state_dir)".into())
            })?;
            let store = super::amt_tls::PinStore::new(&file);
            let pinned = store.get(&hostport);
            let seen = std::sync::Arc::default();
            let connector =
                ().chain(TcpConnector::default())
                    .chain(super::amt_tls::PinnedTls::new(
                        pinned,
                        std::sync::Arc::clone(&seen),
                    ));
            let agent = ureq::Agent::with_parts(config, connector, DefaultResolver::default());
            let pin = TlsPin {
                store,
                endpoint: hostport.clone(),
                pinned,
                seen,
            };
            (agent, Some(pin), "https")
        } else {
            (config.into(), None, "http")
        };
        Ok(Client {
            url: format!("{scheme}://{hostport}/wsman"),
            user: cfg.user.clone().unwrap_or_else(|| "admin".into()),
            password,
            agent,
            next_id: std::cell::Cell::new(1),
            tls: pin,
        })
    }

    /// After a request: a certificate other than the pinned one is an error naming both; the
    /// first certificate seen for an endpoint is pinned (once the request succeeded).
    fn check_pin(&self, ok: bool) -> Result<(), AmtError> {
        let Some(t) = &self.tls else {
            return Ok(());
        };
        let seen = *t.seen.lock().unwrap_or_else(|e| e.into_inner());
        match (t.pinned, seen) {
            (Some(p), Some(s)) if p != s => Err(AmtError::CertChanged {
                url: self.url.clone(),
                endpoint: t.endpoint.clone(),
                file: t.store.file.display().to_string(),
                pinned: super::amt_tls::show(&p),
                seen: super::amt_tls::show(&s),
            }),
            (None, Some(s)) if ok => {
                t.store.add(&t.endpoint, &s).map_err(|e| {
                    AmtError::Config(format!(
                        "cannot pin the certificate of {} in {}: {e}",
                        t.endpoint,
                        t.store.file.display()
                    ))
                })?;
                tracing::info!(endpoint = %t.endpoint, sha256 = %super::amt_tls::show(&s), "AMT certificate pinned on first use");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn post_once(&self, body: &str, auth: Option<&str>) -> Result<(u16, String, String), AmtError> {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/soap+xml;charset=UTF-8");
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.send(body).map_err(|e| AmtError::Unreachable {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| AmtError::Unreachable {
                url: self.url.clone(),
                reason: format!("reading the answer: {e}"),
            })?;
        Ok((resp.status().as_u16(), challenge, text))
    }

    /// Posts a SOAP message, answering the digest challenge; returns the answer's XML.
    fn post(&self, body: &str) -> Result<String, AmtError> {
        let res = self.post_checked(body);
        self.check_pin(res.is_ok())?;
        res
    }

    fn post_checked(&self, body: &str) -> Result<String, AmtError> {
        let (mut status, challenge, mut text) = self.post_once(body, None)?;
        if status == 401 {
            let mut prompt = digest_auth::parse(&challenge).map_err(|e| AmtError::Http {
                url: self.url.clone(),
                status,
                text: format!("a digest challenge that cannot be read ({e}): {challenge:?}"),
            })?;
            let ctx = digest_auth::AuthContext::new_post(
                self.user.as_str(),
                self.password.as_str(),
                "/wsman",
                Some(body.as_bytes()),
            );
            let answer = prompt.respond(&ctx).map_err(|e| AmtError::Http {
                url: self.url.clone(),
                status,
                text: format!("cannot answer the digest challenge: {e}"),
            })?;
            (status, _, text) = self.post_once(body, Some(&answer.to_header_string()))?;
            if status == 401 {
                return Err(AmtError::Refused {
                    url: self.url.clone(),
                    user: self.user.clone(),
                });
            }
        }
        if let Some(reason) = fault(&text) {
            return Err(AmtError::Fault {
                url: self.url.clone(),
                reason,
            });
        }
        if status != 200 {
            return Err(AmtError::Http {
                url: self.url.clone(),
                status,
                text: text.chars().take(200).collect(),
            });
        }
        Ok(text)
    }

    fn id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// The machine's power state (the CIM value).
    pub fn power_state(&self) -> Result<u16, AmtError> {
        let text = self.post(&power_state_request(&self.url, self.id()))?;
        element_text(&text, "PowerState")
            .and_then(|s| s.parse().ok())
            .ok_or(AmtError::Malformed {
                url: self.url.clone(),
                what: "PowerState",
            })
    }

    /// Asks for a power change; Ok when AMT accepted it (ReturnValue 0).
    pub fn change(&self, change: Change) -> Result<(), AmtError> {
        let text = self.post(&power_change_request(&self.url, change, self.id()))?;
        let code = element_text(&text, "ReturnValue").ok_or(AmtError::Malformed {
            url: self.url.clone(),
            what: "ReturnValue",
        })?;
        if code == "0" {
            return Ok(());
        }
        let value = change.cim_value();
        Err(AmtError::NotAccepted {
            url: self.url.clone(),
            value,
            name: state_name(value),
            hint: match code.as_str() {
                "1" => " (not supported in this state: e.g. on while already on)",
                "2" => " (unknown or unspecified error)",
                _ => "",
            },
            code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_request_carries_the_cim_value_and_the_amt_selectors() {
        let m = power_change_request("http://10.0.0.5:16992/wsman", Change::Reset, 7);
        assert_eq!(element_text(&m, "PowerState").as_deref(), Some("10"));
        assert_eq!(
            element_text(&m, "Action").as_deref(),
            Some("http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_PowerManagementService/RequestPowerStateChange")
        );
        assert!(m.contains(
            "<w:Selector Name=\"Name\">Intel(r) AMT Power Management Service</w:Selector>"
        ));
        assert!(m.contains("<w:Selector Name=\"Name\">ManagedSystem</w:Selector>"));
        assert_eq!(Change::On.cim_value(), 2);
        assert_eq!(Change::Off.cim_value(), 8);
    }

    #[test]
    fn answers_an_amt_style_digest_challenge() {
        // AMT's realm contains a colon; the answer must carry it unchanged.
        let mut p = digest_auth::parse(
            "Digest realm=\"Digest:A3829B3827DE4D33D4449B366831FD01\", nonce=\"Ig4c8QAAAAAAAAAAnKqBNBC4lMBoRaVd\", stale=\"false\", qop=\"auth\"",
        )
        .unwrap();
        let ctx =
            digest_auth::AuthContext::new_post("admin", "P@ssw0rd", "/wsman", Some(&b"x"[..]));
        let h = p.respond(&ctx).unwrap().to_header_string();
        assert!(
            h.contains("realm=\"Digest:A3829B3827DE4D33D4449B366831FD01\""),
            "{h}"
        );
        assert!(
            h.contains("qop=auth") && h.contains("uri=\"/wsman\""),
            "{h}"
        );
    }

    #[test]
    fn reads_power_state_and_faults() {
        let ok = "<a:Envelope xmlns:a=\"x\" xmlns:h=\"y\"><a:Body><h:CIM_AssociatedPowerManagementService><h:PowerState>8</h:PowerState></h:CIM_AssociatedPowerManagementService></a:Body></a:Envelope>";
        assert_eq!(element_text(ok, "PowerState").as_deref(), Some("8"));
        assert_eq!(fault(ok), None);
        let f = "<s:Envelope xmlns:s=\"x\"><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code><s:Reason><s:Text xml:lang=\"en-US\">The action is not supported</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>";
        assert_eq!(fault(f).as_deref(), Some("The action is not supported"));
        assert_eq!(state_name(2), "on");
    }
}
