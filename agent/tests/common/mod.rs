//! Helpers shared by the integration tests that run real peers on 127.0.0.1: a free
//! port, and a self-signed certificate with a TLS acceptor for HTTPS/SMTPS servers.
//! Each test binary includes this module (`mod common;`) and uses what it needs.

#![allow(dead_code, reason = "each test binary uses a different part of it")]

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// A port nothing listens on right now (bound and released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate for 127.0.0.1 and localhost (PEM), and a TLS acceptor
/// serving it.
pub(crate) fn self_signed() -> (String, TlsAcceptor) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    (certified.cert.pem(), TlsAcceptor::from(Arc::new(server)))
}
