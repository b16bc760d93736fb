//! [`Tls`]: the server's TLS settings (rustls with the `ring` provider), HTTP/2 and
//! HTTP/1.1 offered by ALPN, and a certificate that can be reloaded while connections stay
//! open.
//!
//! Flow: [`Tls::load`] reads the PEM certificate chain and private key named by
//! [`TlsFiles`] (`--tls-cert`, `--tls-key`) and checks that they belong together. Every
//! handshake asks [`Tls`]'s resolver for the current certificate, so [`Tls::reload`]
//! (`bus server` calls it on SIGHUP) takes effect for the next handshake; connections
//! already open keep the session they negotiated.
//!
//! Failure: a reload that cannot read or parse the files, or whose key does not match the
//! certificate, keeps the certificate in force and returns the error for the caller to log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate and key files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file holding the certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM file holding the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The protocols offered by ALPN, preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The server's TLS configuration with a reloadable certificate. Cheap to clone; clones
/// share the certificate.
#[derive(Clone, Debug)]
pub struct Tls {
    /// Where the certificate comes from, read again by [`Tls::reload`].
    files: TlsFiles,
    /// The resolver every handshake asks.
    resolver: Arc<Resolver>,
    /// The rustls configuration built over the resolver.
    config: Arc<ServerConfig>,
}

/// Hands every handshake the certificate in force.
#[derive(Debug)]
struct Resolver {
    /// The certificate in force. A `std` lock: held only to clone or replace an `Arc`.
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.resolve_current())
    }
}

impl Tls {
    /// Reads and checks the files; fails with a message naming the file and the problem.
    pub fn load(files: &TlsFiles) -> Result<Tls, String> {
        let key = certified_key(files)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(key)),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Ok(Tls {
            files: files.clone(),
            resolver,
            config: Arc::new(config),
        })
    }

    /// Reads the files again and, when they are good, serves the new certificate from the
    /// next handshake on. On error the certificate in force stays.
    pub fn reload(&self) -> Result<(), String> {
        let key = certified_key(&self.files)?;
        let mut g = match self.resolver.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = Arc::new(key);
        Ok(())
    }

    /// The files this configuration reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The acceptor that performs handshakes with this configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// The certificate (chain, leaf first) in force.
    pub fn certificate(&self) -> Vec<CertificateDer<'static>> {
        self.resolver.resolve_current().cert.clone()
    }
}

impl Resolver {
    fn resolve_current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Reads the chain and the key and checks that the key is the leaf's.
fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: no usable private key: {e}", files.key.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("{}: unsupported private key: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(certs, signer);
    certified.keys_match().map_err(|e| {
        format!(
            "{} and {} do not belong together: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    Ok(certified)
}

/// Every certificate of a PEM file, in order; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read certificates: {e}", path.display()))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, c.cert.pem()).unwrap();
        std::fs::write(&files.key, c.key_pair.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn reload_swaps_a_good_certificate_and_keeps_the_old_one_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "a");
        let tls = Tls::load(&files).unwrap();
        let first = tls.certificate();
        // A new pair in the same files is served after a reload.
        let other = write_pair(dir.path(), "b");
        std::fs::copy(&other.cert, &files.cert).unwrap();
        std::fs::copy(&other.key, &files.key).unwrap();
        tls.reload().unwrap();
        let second = tls.certificate();
        assert_ne!(first, second);
        // A broken file is an error, and the second certificate stays.
        std::fs::write(&files.cert, "not a certificate").unwrap();
        let e = tls.reload().unwrap_err();
        assert!(e.contains("a.crt"), "{e}");
        assert_eq!(tls.certificate(), second);
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_pair(dir.path(), "a");
        let b = write_pair(dir.path(), "b");
        let mixed = TlsFiles {
            cert: a.cert,
            key: b.key,
        };
        let e = Tls::load(&mixed).unwrap_err();
        assert!(e.contains("do not belong together"), "{e}");
        let missing = TlsFiles {
            cert: dir.path().join("none.crt"),
            key: dir.path().join("none.key"),
        };
        assert!(Tls::load(&missing).unwrap_err().contains("none.crt"));
    }
}
