//! Parsing a `postgres://` location. keystead reads the TLS parameters and its own ones
//! itself and hands the rest to the client crate, which on its own rejects
//! `sslmode=verify-full` and does not load `sslrootcert`.

use std::sync::Arc;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::Config;

use crate::error::{Error, Result};

/// How to secure the connection.
#[derive(Clone)]
pub(super) enum Tls {
    /// `sslmode=disable`: plain TCP.
    Off,
    /// rustls, which always verifies the server's certificate and name.
    Rustls(Arc<rustls::ClientConfig>),
}

/// A parsed location.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) config: Config,
    pub(super) tls: Tls,
    /// `listen=off` turns LISTEN/NOTIFY off (behind PgBouncer's transaction pooling).
    pub(super) listen: Option<bool>,
    /// `max_misses_per_sec=N`.
    pub(super) max_misses_per_sec: Option<u32>,
    /// The location with its password masked, for messages.
    pub(super) display: String,
}

/// Parses a location; keystead's own parameters (`sslmode`, `sslrootcert`, `listen`,
/// `max_misses_per_sec`) are taken out before the client crate parses the rest.
pub(super) fn parse(location: &str) -> Result<Target> {
    let display = crate::store::display_location(location);
    let (base, query) = match location.split_once('?') {
        Some((base, query)) => (base, query),
        None => (location, ""),
    };
    let mut rest = Vec::new();
    let mut sslmode = None;
    let mut sslrootcert = None;
    let mut listen = None;
    let mut max_misses = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)?;
        match name {
            "sslmode" => sslmode = Some(value),
            "sslrootcert" => sslrootcert = Some(value),
            "listen" => {
                listen = Some(match value.as_str() {
                    "on" | "true" | "1" => true,
                    "off" | "false" | "0" => false,
                    _ => return Err(Error::invalid("`listen` must be `on` or `off`")),
                })
            }
            "max_misses_per_sec" => {
                max_misses = Some(value.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(
                    || Error::invalid("`max_misses_per_sec` must be a positive whole number"),
                )?)
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let mut config: Config = url.parse().map_err(|e: postgres::Error| {
        // The client crate's message names the option, never the password.
        Error::invalid(format!("invalid PostgreSQL location {display}: {e}"))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    // Notice a dead server or a silently dropped connection (e.g. the listener's).
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    config.tcp_user_timeout(Duration::from_secs(15));
    if config.get_application_name().is_none() {
        config.application_name("keystead");
    }
    let tls = match sslmode.as_deref().unwrap_or("prefer") {
        "disable" => {
            if sslrootcert.is_some() {
                return Err(Error::invalid("`sslrootcert` given with `sslmode=disable`"));
            }
            config.ssl_mode(SslMode::Disable);
            Tls::Off
        }
        // rustls always verifies the certificate chain and the host name: `require` and
        // `verify-ca` are as strict as `verify-full` (docs/fleet.md, "TLS").
        mode @ ("prefer" | "require" | "verify-ca" | "verify-full") => {
            config.ssl_mode(if mode == "prefer" {
                SslMode::Prefer
            } else {
                SslMode::Require
            });
            Tls::Rustls(Arc::new(client_config(sslrootcert.as_deref())?))
        }
        "allow" => {
            return Err(Error::invalid(
                "`sslmode=allow` is not supported; use `prefer`, `require` or `verify-full`",
            ))
        }
        other => {
            return Err(Error::invalid(format!(
                "unknown `sslmode` `{}`; supported: disable, prefer, require, verify-ca, \
                 verify-full",
                crate::model::truncate_for_message(other)
            )))
        }
    };
    Ok(Target {
        config,
        tls,
        listen,
        max_misses_per_sec: max_misses,
        display,
    })
}

fn client_config(rootcert: Option<&str>) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                Error::invalid(format!("cannot read `sslrootcert` file {path}: {e}"))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    Error::invalid(format!("`sslrootcert` file {path} is not PEM: {e}"))
                })?;
                roots
                    .add(cert)
                    .map_err(|e| Error::invalid(format!("`sslrootcert` file {path}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(Error::invalid(format!(
                    "`sslrootcert` file {path} holds no certificate"
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Storage(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `%XX` escapes decoded (values such as file paths may carry them).
fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::invalid("bad `%` escape in a location parameter"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid("a location parameter is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        let err = parse("postgres://app:s3cret@db/keys?sslmode=bogus")
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        let err = parse("postgres://app:s3cret@db/keys?frobnicate=1")
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn keystead_reads_the_tls_and_its_own_parameters() {
        let target = parse("postgres://u:p@localhost:5433/db?sslmode=verify-full&listen=off&max_misses_per_sec=10&application_name=x").unwrap();
        assert!(matches!(target.tls, Tls::Rustls(_)));
        assert_eq!(target.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(target.listen, Some(false));
        assert_eq!(target.max_misses_per_sec, Some(10));
        assert_eq!(target.config.get_dbname(), Some("db"));
        assert_eq!(target.config.get_application_name(), Some("x"));
        let plain = parse("postgres://u@127.0.0.1/db?sslmode=disable").unwrap();
        assert!(matches!(plain.tls, Tls::Off));
        assert!(parse("postgres://u@h/db?sslrootcert=/nonexistent/ca.pem").is_err());
        assert!(parse("postgres://u@h/db?listen=maybe").is_err());
        assert!(parse("postgres://u@h/db?sslmode=allow").is_err());
    }
}
