//! [`TestCerts`]: a certificate authority and a server certificate signed by it, for
//! `localhost` and `127.0.0.1`, made fresh in a temporary directory (rcgen), with the PEM
//! files a broker (`--tls-cert`, `--tls-key`) and its clients (`--cacert`) are given.

use std::path::{Path, PathBuf};

use bus_broker::tls::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A CA and a server certificate, as files that live as long as this value.
pub struct TestCerts {
    /// Holds the files.
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM), for `--cacert`.
    pub ca: PathBuf,
    /// The server's certificate and key (PEM).
    pub server: TlsFiles,
}

impl TestCerts {
    /// A new CA named `name` and a server certificate it signed, for `localhost` and
    /// `127.0.0.1`.
    pub fn new(name: &str) -> TestCerts {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_signed(dir.path(), name);
        TestCerts {
            ca: files.0,
            server: files.1,
            dir,
        }
    }

    /// Writes another CA and server pair over this one's server files (as an operator
    /// replacing a certificate before SIGHUP) and returns the new CA's file.
    pub fn replace_server(&self, name: &str) -> PathBuf {
        let sub = self.dir.path().join(name);
        std::fs::create_dir_all(&sub).expect("mkdir");
        let (ca, server) = write_signed(&sub, name);
        std::fs::copy(&server.cert, &self.server.cert).expect("copy cert");
        std::fs::copy(&server.key, &self.server.key).expect("copy key");
        ca
    }
}

fn write_signed(dir: &Path, name: &str) -> (PathBuf, TlsFiles) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("bus test CA {name}"));
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let ca_path = dir.join("ca.pem");
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    std::fs::write(&files.cert, cert.pem()).expect("write cert");
    std::fs::write(&files.key, key.serialize_pem()).expect("write key");
    (ca_path, files)
}
