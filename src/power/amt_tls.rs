//! TLS for Intel AMT (port 16993) with the certificate pinned on first use (issue 10).
//!
//! AMT presents a certificate no public CA vouches for (self-signed at provisioning, or from a
//! site CA pxelator does not know), so it is trusted the way ssh trusts a host key: the SHA-256
//! of the certificate seen on the first connection is written to `<state_dir>/amt/known_certs`
//! under the endpoint's `host:port`, and every later connection must present the same one —
//! a different certificate is refused with both fingerprints and the line to delete if the
//! machine was really re-provisioned. The handshake's signatures are still checked with the
//! certificate's key (rustls + ring), so presenting the pinned certificate without its private
//! key fails too.
//!
//! The TLS layer is a ureq connector (after ureq's own TCP connector), so requests, timeouts
//! and the digest exchange stay in [`super::amt::Client`].
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// A certificate fingerprint: SHA-256 of its DER bytes.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(der: &[u8]) -> Fingerprint {
    sha2::Sha256::digest(der).into()
}

/// `AA:BB:…`, as `openssl x509 -fingerprint -sha256` prints it.
pub fn show(fp: &Fingerprint) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Pinned certificates, one `host:port SHA256-HEX` line each.
#[derive(Debug, Clone)]
pub struct PinStore {
    pub file: PathBuf,
}

impl PinStore {
    pub fn new(file: &Path) -> PinStore {
        PinStore {
            file: file.to_owned(),
        }
    }

    fn lines(&self) -> Vec<(String, Fingerprint)> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (name, hex) = l.split_once(' ')?;
                let bytes = crate::proto::unhex(hex.trim())?;
                Some((name.to_owned(), bytes.try_into().ok()?))
            })
            .collect()
    }

    pub fn get(&self, endpoint: &str) -> Option<Fingerprint> {
        self.lines()
            .into_iter()
            .find(|(n, _)| n == endpoint)
            .map(|(_, f)| f)
    }

    /// Records the pin for `endpoint` (replacing none: a pinned endpoint is never re-pinned).
    pub fn add(&self, endpoint: &str, fp: &Fingerprint) -> std::io::Result<()> {
        let mut lines = self.lines();
        if lines.iter().any(|(n, _)| n == endpoint) {
            return Ok(());
        }
        lines.push((endpoint.to_owned(), *fp));
        let text: String = lines
            .iter()
            .map(|(n, f)| format!("{n} {}\n", crate::proto::hex(f)))
            .collect();
        crate::fsutil::write_private(&self.file, text.as_bytes())
    }
}

/// Accepts exactly the pinned certificate (or, with no pin yet, any: trust on first use) and
/// remembers which one it saw; signatures are verified as usual.
#[derive(Debug)]
struct PinVerifier {
    pinned: Option<Fingerprint>,
    seen: Arc<Mutex<Option<Fingerprint>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity.as_ref());
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(fp);
        match self.pinned {
            Some(p) if p != fp => Err(rustls::Error::General(
                "certificate differs from the pinned one".into(),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The ureq connector that wraps the TCP stream in TLS with [`PinVerifier`].
#[derive(Debug)]
pub struct PinnedTls {
    config: Arc<ClientConfig>,
}

impl PinnedTls {
    /// With `pinned` None, any certificate is accepted (and reported through `seen`).
    pub fn new(pinned: Option<Fingerprint>, seen: Arc<Mutex<Option<Fingerprint>>>) -> PinnedTls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                pinned,
                seen,
                provider,
            }))
            .with_no_client_auth();
        PinnedTls {
            config: Arc::new(config),
        }
    }
}

fn io_err(e: impl std::fmt::Display) -> ureq::Error {
    ureq::Error::Io(std::io::Error::other(e.to_string()))
}

impl<In: Transport> Connector<In> for PinnedTls {
    type Out = Either<In, PinnedTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Err(io_err("TLS needs a TCP connection first"));
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .host()
            .ok_or_else(|| io_err("no host in the AMT URL"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name = ServerName::try_from(host).map_err(io_err)?;
        let mut conn = ClientConnection::new(self.config.clone(), name).map_err(io_err)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        Ok(Some(Either::B(PinnedTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: StreamOwned { conn, sock },
        })))
    }
}

pub struct PinnedTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for PinnedTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedTransport").finish()
    }
}

impl Transport for PinnedTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_kept_per_endpoint_private_and_never_replaced() {
        let d = tempfile::tempdir().unwrap();
        let s = PinStore::new(&d.path().join("amt/known_certs"));
        assert_eq!(s.get("10.0.0.5:16993"), None);
        let a = fingerprint(b"cert a");
        let b = fingerprint(b"cert b");
        s.add("10.0.0.5:16993", &a).unwrap();
        s.add("10.0.0.6:16993", &b).unwrap();
        s.add("10.0.0.5:16993", &b).unwrap();
        assert_eq!(s.get("10.0.0.5:16993"), Some(a));
        assert_eq!(s.get("10.0.0.6:16993"), Some(b));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&s.file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(show(&a).len() == 95 && show(&a).contains(':'));
    }
}
