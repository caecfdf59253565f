//! Helpers shared by the integration tests that run real peers on 127.0.0.1: a free
//! port, and a self-signed certificate with a TLS acceptor for HTTPS/SMTPS servers.
//! Each test binary includes this module (`mod common;`) and uses what it needs.

#![allow(dead_code, reason = "each test binary uses a different part of it")]

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// A port nothing listens on right now, and that nothing else in this machine's tests
/// will be handed before the caller binds it.
///
/// Binding port 0 and releasing it is racy: the kernel hands the same ephemeral range to
/// every outgoing connection (this suite makes thousands), so between the release and the
/// agent's bind a client socket could take the port and the agent fail to start. The
/// ports here come from below the ephemeral range, so no outgoing connection takes them;
/// a per-process counter keeps this binary's picks distinct, and the start is spread by
/// the process id so that two test binaries do not walk the same ports.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const LOW: u32 = 10_000;
    let span = ephemeral_low.saturating_sub(LOW).max(1_000);
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start + step) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + span)
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
