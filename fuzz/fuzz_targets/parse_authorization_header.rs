//! `parse_authorization_header` on arbitrary bytes: never panics; `Ok(token)` exactly when the
//! value is `OWS Bearer 1*SP b64token OWS`, `Missing` exactly for blank values and other
//! schemes' plain-text credentials, `Malformed` otherwise (checked against an independent
//! reference); the token lies inside the input; every b64token is accepted after `Bearer `.
#![no_main]

use keystead::{parse_authorization_header, HeaderError};
use keystead_fuzz::{
    hex, is_b64token, reference_bearer, reference_other_scheme, trim_ows, MAX_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

fn check(input: &[u8]) {
    let result = parse_authorization_header(input);
    let expected = reference_bearer(input);
    match result {
        Ok(token) => {
            let t = token.as_bytes();
            assert!(
                is_b64token(t),
                "not a b64token: {token:?} from {}",
                hex(input)
            );
            let range = input.as_ptr_range();
            assert!(
                range.start <= t.as_ptr() && t.as_ptr_range().end <= range.end,
                "token is not a substring of the input {}",
                hex(input)
            );
            assert_eq!(
                Some(t),
                expected,
                "Ok({token:?}) but the reference says {:?} for {}",
                expected.map(String::from_utf8_lossy),
                hex(input)
            );
            // The token handed back parses to itself in canonical form.
            let canonical = [b"Bearer ".as_slice(), t].concat();
            assert_eq!(parse_authorization_header(&canonical), Ok(token));
        }
        Err(err) => {
            assert_eq!(
                expected,
                None,
                "{err:?} but the reference extracts {:?} from {}",
                expected.map(String::from_utf8_lossy),
                hex(input)
            );
            // Missing: blank, or another scheme's plain-text credentials; else Malformed
            // (including anything over 4 KiB).
            let missing = input.len() <= MAX_HEADER_LEN
                && (trim_ows(input).is_empty() || reference_other_scheme(input));
            let expected = if missing {
                HeaderError::Missing
            } else {
                HeaderError::Malformed
            };
            assert_eq!(
                err,
                expected,
                "for {:?} ({})",
                String::from_utf8_lossy(input),
                hex(input)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // Completeness: every b64token that fits is extracted, whatever the scheme's case and the
    // surrounding whitespace.
    if is_b64token(data) {
        for wrapped in [
            [b"Bearer ".as_slice(), data].concat(),
            [b" \tbEaReR   ".as_slice(), data, b" \t"].concat(),
        ] {
            let expected = if wrapped.len() <= MAX_HEADER_LEN {
                Ok(std::str::from_utf8(data).expect("b64token is ASCII"))
            } else {
                Err(HeaderError::Malformed)
            };
            assert_eq!(
                parse_authorization_header(&wrapped),
                expected,
                "{}",
                hex(&wrapped)
            );
            check(&wrapped);
        }
    }
});
