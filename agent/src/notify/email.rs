//! Email delivery: renders a notification with the receiver's templates into a
//! multipart/alternative mail (plain text and HTML, UTF-8), sends it over SMTP with
//! lettre (rustls, the platform's roots plus `ca_file`), and classifies the outcome.
//!
//! # Message
//! `From`, `To` (every address), `Subject`, `Date` (the notification's creation, so a
//! retry is the same mail), `Message-ID: <id@sidewatch>` (the idempotency key: a repeat
//! after a crash carries the same one, and mail systems drop the duplicate), and
//! `Auto-Submitted: auto-generated` (RFC 3834: no vacation replies to an alert).
//!
//! # Transport
//! `tls: starttls` upgrades the connection and refuses a server that does not offer
//! STARTTLS (no credentials or mail go out in clear); `tls: tls` is TLS from the first
//! byte (SMTPS); `tls: none` is plain SMTP, for a relay on localhost. `username` /
//! `password` authenticate with PLAIN or LOGIN. `timeout` bounds the whole exchange
//! (lettre's own timeout covers only the TCP connect; a server that accepts and then
//! says nothing would hold a send forever).
//!
//! Each mail has a connection of its own, closed after it (lettre is built without its
//! `pool` feature): alerts are rare, and a pooled connection that an earlier send left
//! mid-command (timed out) would answer the next mail's commands out of step. The
//! transport is built on the first send.
//!
//! # Outcome
//! A permanent SMTP reply (5xx: unknown recipient, refused credentials) fails for good;
//! everything else — a transient 4xx, a timeout, a refused or dropped connection, an
//! untrusted certificate (named in the reason) — is retried.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Notification;
use super::config::{EmailConfig, SmtpTls};
use super::payload::{Delivery, EmailTemplates, TemplateError};
use super::webhook::{certificate_problem, error_text};

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("invalid `{field}` address `{value}`: {reason}")]
    Address {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("smarthost `{0}` is not host:port")]
    Smarthost(String),
    #[error("cannot read ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// One email receiver: its addresses, templates and SMTP transport.
pub struct EmailSender {
    /// Built on first use (see the module doc); `builder` holds everything it needs.
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    builder: lettre::transport::smtp::AsyncSmtpTransportBuilder,
    templates: EmailTemplates,
    from: Mailbox,
    to: Vec<Mailbox>,
    external_url: String,
    /// `host:port`, for log lines.
    smarthost: String,
    /// The bound on one send, connect to QUIT.
    timeout: Duration,
}

impl std::fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the builder: it holds the credentials.
        f.debug_struct("EmailSender")
            .field("smarthost", &self.smarthost)
            .field("to", &self.to.len())
            .finish()
    }
}

impl EmailSender {
    /// Checks the addresses, compiles the templates, loads `ca_file` and prepares the
    /// SMTP transport; nothing connects yet.
    pub fn new(cfg: &EmailConfig, external_url: &str) -> Result<Self, EmailError> {
        let mailbox = |field: &'static str, value: &str| {
            value.parse::<Mailbox>().map_err(|e| EmailError::Address {
                field,
                value: value.to_string(),
                reason: e.to_string().to_lowercase(),
            })
        };
        let from = mailbox("from", &cfg.from)?;
        let to = cfg
            .to
            .iter()
            .map(|address| mailbox("to", address))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(EmailError::Address {
                field: "to",
                value: String::new(),
                reason: "no recipient".into(),
            });
        }
        let templates = EmailTemplates::new(cfg)?;
        let (host, port) = split_smarthost(&cfg.smarthost, cfg.tls)?;

        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone()).port(port);
        if cfg.tls != SmtpTls::None {
            let mut params = TlsParameters::builder(host.clone());
            if let Some(path) = &cfg.ca_file {
                params = params.add_root_certificate(load_ca_file(path)?);
            }
            let params = params
                .build_rustls()
                .map_err(|e| EmailError::Tls(error_text(&e)))?;
            builder = builder.tls(match cfg.tls {
                SmtpTls::Starttls => Tls::Required(params),
                _ => Tls::Wrapper(params),
            });
        }
        if let Some(hello) = &cfg.hello {
            builder = builder.hello_name(ClientId::Domain(hello.clone()));
        }
        if let Some(username) = &cfg.username {
            let password = cfg
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            builder = builder
                .credentials(Credentials::new(username.clone(), password))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        builder = builder.timeout(Some(cfg.timeout));

        Ok(EmailSender {
            transport: OnceLock::new(),
            builder,
            templates,
            from,
            to,
            external_url: external_url.to_string(),
            smarthost: format!("{host}:{port}"),
            timeout: cfg.timeout,
        })
    }

    /// `host:port` of the SMTP server, for log lines.
    pub fn smarthost(&self) -> &str {
        &self.smarthost
    }

    /// The mail for `n`, and the template warnings to log (a user template that failed
    /// and was replaced by the built-in one).
    pub fn message(&self, n: &Notification) -> Result<(Message, Vec<String>), String> {
        let rendered = self.templates.render(n, &self.external_url);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(rendered.subject)
            .date(system_time(n.created))
            .message_id(Some(message_id(&n.id)))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
            .map_err(|e| format!("cannot build the mail: {e}"))?;
        Ok((message, rendered.warnings))
    }

    /// One attempt to deliver `n`; never panics. Template warnings are logged here.
    pub async fn send(&self, n: &Notification) -> Delivery {
        let (message, warnings) = match self.message(n) {
            Ok(built) => built,
            Err(reason) => return Delivery::Failed { reason },
        };
        for warning in &warnings {
            tracing::warn!(receiver = %n.receiver, notification = %n.id, "{warning}");
        }
        let transport = self.transport.get_or_init(|| self.builder.clone().build());
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Ok(Ok(_)) => Delivery::Delivered,
            Ok(Err(e)) => classify(&e, self.timeout),
            Err(_) => Delivery::Retry {
                after: None,
                reason: timed_out(self.timeout),
            },
        }
    }
}

/// Permanent SMTP replies fail; everything else is worth another try.
fn classify(err: &lettre::transport::smtp::Error, timeout: Duration) -> Delivery {
    if err.is_permanent() {
        return Delivery::Failed {
            reason: format!("smtp server refused the mail: {}", smtp_reply(err)),
        };
    }
    let reason = if err.is_transient() {
        format!("smtp server deferred the mail: {}", smtp_reply(err))
    } else if err.is_timeout() {
        timed_out(timeout)
    } else if let Some(tls) = certificate_problem(err) {
        format!("tls: {tls} (hint: ca_file adds a trust root for a private CA)")
    } else if let Some(problem) = connection_problem(err) {
        format!("smtp server: {problem}")
    } else {
        let text = error_text(err);
        // lettre's words start with a capital ("Connection error: …").
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => first.to_lowercase().chain(chars).collect(),
            None => text,
        }
    };
    Delivery::Retry {
        after: None,
        reason,
    }
}

fn timed_out(timeout: Duration) -> String {
    format!(
        "smtp server timed out after {}",
        humantime::format_duration(timeout)
    )
}

/// A connection-level failure in an error's chain, in a few words.
fn connection_problem(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return Some("connection refused"),
                ConnectionReset => return Some("connection reset"),
                ConnectionAborted => return Some("connection aborted"),
                UnexpectedEof => return Some("connection closed unexpectedly"),
                HostUnreachable | NetworkUnreachable => return Some("host unreachable"),
                _ => {}
            }
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// `550 5.1.1 no such user`: the reply code and the server's words.
fn smtp_reply(err: &lettre::transport::smtp::Error) -> String {
    let words = std::error::Error::source(err).map(|s| s.to_string());
    match (err.status(), words) {
        (Some(code), Some(words)) => format!("{code} {words}"),
        (Some(code), None) => code.to_string(),
        (None, _) => error_text(err),
    }
}

/// `<id@sidewatch>`, with any character a message id may not hold replaced by `-`.
fn message_id(id: &str) -> String {
    let local: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+=".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let local = local.trim_matches('.');
    let local = if local.is_empty() {
        "notification"
    } else {
        local
    };
    format!("<{local}@sidewatch>")
}

fn system_time(unix_nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(unix_nanos).unwrap_or(0))
}

/// `host:port` → both; without a port, the one `tls` implies (587, 465, 25).
fn split_smarthost(smarthost: &str, tls: SmtpTls) -> Result<(String, u16), EmailError> {
    let bad = || EmailError::Smarthost(smarthost.to_string());
    let default_port = match tls {
        SmtpTls::Starttls => 587,
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
    };
    // `[::1]:25`
    if let Some(rest) = smarthost.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().map_err(|_| bad())?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    let (host, port) = match smarthost.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
        None => (smarthost, default_port),
    };
    if host.is_empty() || host.contains(':') || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// The PEM file as one lettre `Certificate` (it may hold several); an error when it
/// holds none.
fn load_ca_file(path: &Path) -> Result<Certificate, EmailError> {
    let fail = |reason: String| EmailError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = fs_err::read(path).map_err(|e| {
        fail(match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".into(),
            std::io::ErrorKind::PermissionDenied => "permission denied".into(),
            kind => kind.to_string(),
        })
    })?;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let count = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate bundle: {e}")))?
        .len();
    if count == 0 {
        return Err(fail(
            "no PEM certificate in it (`-----BEGIN CERTIFICATE-----`)".into(),
        ));
    }
    Certificate::from_pem(&pem).map_err(|e| fail(error_text(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smarthosts_split_with_the_tls_default_port() {
        let ok = |s: &str, tls| split_smarthost(s, tls).map_err(|e| e.to_string());
        assert_eq!(
            ok("smtp.example.com:2525", SmtpTls::None),
            Ok(("smtp.example.com".into(), 2525))
        );
        assert_eq!(
            ok("smtp.example.com", SmtpTls::Starttls),
            Ok(("smtp.example.com".into(), 587))
        );
        assert_eq!(
            ok("smtp.example.com", SmtpTls::Tls),
            Ok(("smtp.example.com".into(), 465))
        );
        assert_eq!(ok("[::1]:25", SmtpTls::None), Ok(("::1".into(), 25)));
        for bad in ["smtp:port", ":25", "::1:25", "[::1", "[::1]x", "a b:25"] {
            assert!(split_smarthost(bad, SmtpTls::None).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_ids_keep_the_key_and_stay_valid() {
        assert_eq!(message_id("0193a1b2-c3d4"), "<0193a1b2-c3d4@sidewatch>");
        assert_eq!(message_id("a b<c>@d"), "<a-b-c--d@sidewatch>");
        assert_eq!(message_id(""), "<notification@sidewatch>");
    }
}
