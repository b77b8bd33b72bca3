//! The TLS configuration of the registry client: the system's CA bundle, plus the
//! certificates of `--cert-dir`, or (`--tls-verify=false`) no verification at all.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::Options;
use crate::image::error::ImageError;

/// Debian's bundle of the system CAs (package ca-certificates).
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn add_pem(roots: &mut RootCertStore, path: &std::path::Path) -> Result<usize, ImageError> {
    let data = std::fs::read(path).map_err(super::super::error::io_ctx(path.display()))?;
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut &data[..]) {
        let cert = cert.map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))?;
        if roots.add(cert).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// The client configuration for `opts`.
pub fn config(opts: &Options) -> Result<ClientConfig, ImageError> {
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
    let system = std::path::Path::new(SYSTEM_BUNDLE);
    if system.is_file() {
        add_pem(&mut roots, system)?;
    }
    if let Some(dir) = &opts.cert_dir {
        let rd = std::fs::read_dir(dir).map_err(super::super::error::io_ctx(dir.display()))?;
        let mut found = 0;
        for e in rd.flatten() {
            let p = e.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("crt" | "pem")) {
                found += add_pem(&mut roots, &p)?;
            }
        }
        if found == 0 {
            return Err(ImageError::Invalid(format!(
                "--cert-dir {}: no certificate (*.crt, *.pem) in it",
                dir.display()
            )));
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
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
