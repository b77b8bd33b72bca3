//! The TLS configuration of the registry client, as containers/image makes it: the
//! system's CA bundle, plus the certificate directory of the registry — `--cert-dir DIR`,
//! else `/etc/containers/certs.d/HOST[:PORT]/` or `/etc/docker/certs.d/HOST[:PORT]/` — in
//! which `*.crt` (and `*.pem`) are CAs and a `*.cert` with its `*.key` is the client's
//! certificate; or (`--tls-verify=false`) no verification at all. A certificate placed in
//! that directory is trusted as the server's own too (the usual `openssl req -x509`
//! self-signed certificate is a CA, which WebPKI refuses as a server's; skopeo and podman
//! take it), still only for the names it carries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::Options;
use crate::image::error::{io_ctx, ImageError};

/// Debian's bundle of the system CAs (package ca-certificates).
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where registries' certificate directories are looked for, as containers/image does.
const CERTS_D: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

fn certs_in(path: &Path) -> Result<Vec<CertificateDer<'static>>, ImageError> {
    let data = std::fs::read(path).map_err(io_ctx(path.display()))?;
    rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))
}

fn add_pem(roots: &mut RootCertStore, path: &Path) -> Result<usize, ImageError> {
    Ok(certs_in(path)?
        .into_iter()
        .filter(|c| roots.add(c.clone()).is_ok())
        .count())
}

/// What a registry's certificate directory holds.
#[derive(Default)]
struct CertDir {
    cas: Vec<CertificateDer<'static>>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// Reads `dir`: `*.crt`, `*.pem` CAs; `NAME.cert` with `NAME.key`, the client's pair.
fn read_cert_dir(dir: &Path) -> Result<CertDir, ImageError> {
    let mut out = CertDir::default();
    let rd = std::fs::read_dir(dir).map_err(io_ctx(dir.display()))?;
    let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    files.sort();
    for p in &files {
        match p.extension().and_then(|x| x.to_str()) {
            Some("crt" | "pem") => out.cas.extend(certs_in(p)?),
            Some("cert") => {
                let key = p.with_extension("key");
                let data = std::fs::read(&key).map_err(|e| {
                    ImageError::Invalid(format!(
                        "{}: a client certificate needs its key ({}): {e}",
                        p.display(),
                        key.display()
                    ))
                })?;
                let k = rustls_pemfile::private_key(&mut &data[..])
                    .map_err(|e| ImageError::Invalid(format!("{}: {e}", key.display())))?
                    .ok_or_else(|| {
                        ImageError::Invalid(format!("{}: no private key in it", key.display()))
                    })?;
                out.client = Some((certs_in(p)?, k));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The certificate directory for `host` (`HOST:PORT` as the registry is named): `--cert-dir`,
/// else the first of certs.d that has one; `None` when there is none.
fn cert_dir_for(opts: &Options, host: &str) -> Result<Option<CertDir>, ImageError> {
    if let Some(dir) = &opts.cert_dir {
        let d = read_cert_dir(dir)?;
        if d.cas.is_empty() && d.client.is_none() {
            return Err(ImageError::Invalid(format!(
                "--cert-dir {}: no certificate (*.crt, *.pem, or *.cert with its *.key) in it",
                dir.display()
            )));
        }
        return Ok(Some(d));
    }
    for base in CERTS_D {
        let dir = Path::new(base).join(host);
        if dir.is_dir() {
            return read_cert_dir(&dir).map(Some);
        }
    }
    Ok(None)
}

/// The client configuration for `opts` talking to registry `host` (`HOST[:PORT]`).
pub fn config(opts: &Options, host: &str) -> Result<ClientConfig, ImageError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ImageError::Registry(format!("TLS: {e}")))?;
    if opts.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    let system = Path::new(SYSTEM_BUNDLE);
    if system.is_file() {
        add_pem(&mut roots, system)?;
    }
    let dir = cert_dir_for(opts, host)?.unwrap_or_default();
    for c in &dir.cas {
        let _ = roots.add(c.clone());
    }
    let tls = |e: rustls::Error| ImageError::Registry(format!("TLS: {e}"));
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ImageError::Registry(format!("TLS: {e}")))?;
    let verifier = Arc::new(Pinned {
        webpki,
        pinned: dir.cas,
    });
    let b = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match dir.client {
        Some((chain, key)) => b.with_client_auth_cert(chain, key).map_err(tls),
        None => Ok(b.with_no_client_auth()),
    }
}

/// WebPKI verification, and a server certificate that is one of the certificate
/// directory's own (for the server's name) even where WebPKI refuses it.
#[derive(Debug)]
struct Pinned {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            Err(e)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                let cert =
                    rustls::server::ParsedCertificate::try_from(end_entity).map_err(|_| e)?;
                rustls::client::verify_server_name(&cert, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `--tls-verify=false`: every certificate is accepted (signatures are still checked,
/// so the connection is encrypted, only not authenticated).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
