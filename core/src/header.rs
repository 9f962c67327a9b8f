//! `Authorization` header parsing (RFC 9110 §11.6.2 credentials, RFC 6750 §2.1 bearer tokens).

/// Longest header value considered; anything longer is malformed without being scanned.
pub const MAX_HEADER_LEN: usize = 4096;

/// Why an `Authorization` value yields no bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// No credentials: the value is absent, empty or whitespace, or uses another scheme
    /// (RFC 6750 §3.1 treats an unsupported scheme as a request without authentication).
    #[error("no bearer credentials were presented")]
    Missing,
    /// The value is not `Bearer <b64token>`: no token, a second token, commas, control or
    /// non-ASCII characters, a bare token without scheme, or longer than 4 KiB.
    #[error("the Authorization header is not of the form `Bearer <token>`")]
    Malformed,
}

/// RFC 9110 `tchar`: the characters of an auth-scheme.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 6750 `b64token` body characters (without the trailing `=` padding).
fn is_b64token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Extracts the bearer token from an `Authorization` header value.
///
/// The scheme is matched case-insensitively, one or more spaces separate it from the token,
/// surrounding spaces and tabs are ignored, and the token must be a single RFC 6750 `b64token`.
///
/// # Errors
/// [`HeaderError::Missing`] for no credentials (including another scheme such as `Basic`),
/// [`HeaderError::Malformed`] for anything that is not exactly one bearer token.
///
/// # Example
/// ```
/// use keystead::{parse_authorization_header, HeaderError};
/// assert_eq!(parse_authorization_header(b"bearer  abc.def"), Ok("abc.def"));
/// assert_eq!(parse_authorization_header(b""), Err(HeaderError::Missing));
/// assert_eq!(parse_authorization_header(b"Bearer a b"), Err(HeaderError::Malformed));
/// ```
pub fn parse_authorization_header(value: &[u8]) -> Result<&str, HeaderError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(HeaderError::Malformed);
    }
    let start = value.iter().position(|&b| !is_ows(b));
    let Some(start) = start else {
        return Err(HeaderError::Missing);
    };
    let end = value
        .iter()
        .rposition(|&b| !is_ows(b))
        .map_or(start, |e| e + 1);
    let value = &value[start..end];

    let scheme_len = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_len);
    if scheme.is_empty() || !scheme.iter().all(|&b| is_tchar(b)) {
        return Err(HeaderError::Malformed);
    }
    if rest.is_empty() {
        // `Bearer` with no token, or a bare token with no scheme.
        return Err(HeaderError::Malformed);
    }
    let token = &rest[rest.iter().position(|&b| b != b' ').unwrap_or(rest.len())..];
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Another scheme's credentials may hold anything; only check they are plain text.
        return if token
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            Err(HeaderError::Missing)
        } else {
            Err(HeaderError::Malformed)
        };
    }
    let body_len = token
        .iter()
        .position(|&b| !is_b64token_char(b))
        .unwrap_or(token.len());
    if body_len == 0 || !token[body_len..].iter().all(|&b| b == b'=') {
        return Err(HeaderError::Malformed);
    }
    // Only ASCII characters passed the checks above.
    std::str::from_utf8(token).map_err(|_| HeaderError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_cases() {
        assert_eq!(parse_authorization_header(b"Bearer abc"), Ok("abc"));
        assert_eq!(
            parse_authorization_header(b" \tBEARER   abc== \t"),
            Ok("abc==")
        );
        assert_eq!(
            parse_authorization_header(b"   "),
            Err(HeaderError::Missing)
        );
        assert_eq!(
            parse_authorization_header(b"Basic dXNlcjpw"),
            Err(HeaderError::Missing)
        );
        assert_eq!(
            parse_authorization_header(b"Bearer"),
            Err(HeaderError::Malformed)
        );
        assert_eq!(
            parse_authorization_header(b"Bearer a=b"),
            Err(HeaderError::Malformed)
        );
        assert_eq!(
            parse_authorization_header(b"Bearer\tabc"),
            Err(HeaderError::Malformed)
        );
        assert_eq!(
            parse_authorization_header(b"Bearer a,b"),
            Err(HeaderError::Malformed)
        );
        assert_eq!(
            parse_authorization_header(b"Bearer ab\0"),
            Err(HeaderError::Malformed)
        );
        assert_eq!(
            parse_authorization_header(b"Bearer \xff"),
            Err(HeaderError::Malformed)
        );
        let long = [b"Bearer ".as_slice(), &[b'a'; MAX_HEADER_LEN]].concat();
        assert_eq!(
            parse_authorization_header(&long),
            Err(HeaderError::Malformed)
        );
    }
}
