//! Fixed-width base62 (`0-9A-Za-z`, most significant digit first, left-padded with `0`).

use zeroize::Zeroize;

pub(crate) const ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

const INVALID: u8 = 0xff;

/// Digit value of every byte, `INVALID` for bytes outside the alphabet.
const DIGITS: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 62 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Value of one base62 digit, or `None` for a byte outside the alphabet.
#[inline]
pub(crate) fn digit(byte: u8) -> Option<u8> {
    let d = DIGITS[byte as usize];
    (d != INVALID).then_some(d)
}

/// Whether every byte is a base62 digit.
#[inline]
pub(crate) fn is_base62(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| DIGITS[b as usize] != INVALID)
}

/// Writes `value` into `out` (its length is the width). The caller picks a width that fits.
pub(crate) fn encode_u64(mut value: u64, out: &mut [u8]) {
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    debug_assert_eq!(value, 0, "width too small for value");
}

/// Reads a fixed-width number; `None` on a non-digit or a value above `u64::MAX`.
pub(crate) fn decode_u64(text: &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for &b in text {
        value = value.checked_mul(62)?.checked_add(u64::from(digit(b)?))?;
    }
    Some(value)
}

/// Width of a 256-bit number in base62: 62^43 > 2^256.
pub(crate) const U256_WIDTH: usize = 43;

/// Writes a big-endian 256-bit number as 43 base62 digits.
pub(crate) fn encode_u256(value: &[u8; 32], out: &mut [u8; U256_WIDTH]) {
    // Four big-endian 64-bit limbs, divided by 62 once per output digit.
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(value.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *limb = u64::from_be_bytes(bytes);
        bytes.zeroize();
    }
    for slot in out.iter_mut().rev() {
        let mut remainder: u128 = 0;
        for limb in limbs.iter_mut() {
            let current = (remainder << 64) | u128::from(*limb);
            *limb = (current / 62) as u64;
            remainder = current % 62;
        }
        *slot = ALPHABET[remainder as usize];
    }
    debug_assert!(limbs.iter().all(|&l| l == 0));
    limbs.zeroize();
}

/// Reads 43 base62 digits as a big-endian 256-bit number; `None` on a non-digit, a wrong
/// length or a value of 2^256 or more (so every accepted string has exactly one value).
pub(crate) fn decode_u256(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != U256_WIDTH {
        return None;
    }
    // Ten digits at a time (62^10 < 2^64): one multi-limb multiply per chunk instead of one
    // per digit. The value only grows, so a carry out of the top limb at any step means the
    // number is 2^256 or more.
    let mut limbs = [0u64; 4];
    for chunk in text.chunks(10) {
        let mut value = 0u64;
        let mut scale = 1u64;
        for &b in chunk {
            value = value * 62 + u64::from(digit(b)?);
            scale *= 62;
        }
        let mut carry = u128::from(value);
        for limb in limbs.iter_mut().rev() {
            let current = u128::from(*limb) * u128::from(scale) + carry;
            *limb = current as u64;
            carry = current >> 64;
        }
        value.zeroize();
        if carry != 0 {
            limbs.zeroize();
            return None;
        }
    }
    let mut out = [0u8; 32];
    for (chunk, limb) in out.chunks_exact_mut(8).zip(limbs.iter()) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    limbs.zeroize();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_round_trips_at_the_edges() {
        for value in [0, 1, 61, 62, 3843, u64::from(u32::MAX), u64::MAX] {
            let mut out = [0u8; 12];
            encode_u64(value, &mut out);
            assert_eq!(decode_u64(&out), Some(value));
        }
        let mut out = [0u8; 12];
        encode_u64(u64::MAX, &mut out);
        // 62^11 > 2^64, so the widest u64 still starts with a padding zero.
        assert_eq!(out[0], b'0');
    }

    #[test]
    fn u64_overflow_is_rejected() {
        assert_eq!(decode_u64(b"zzzzzzzzzzzz"), None);
        assert_eq!(decode_u64(b"00000000000-"), None);
    }

    #[test]
    fn u256_round_trips_and_rejects_overflow() {
        let max = [0xffu8; 32];
        let mut out = [0u8; U256_WIDTH];
        encode_u256(&max, &mut out);
        assert_eq!(decode_u256(&out), Some(max));
        let zero = [0u8; 32];
        encode_u256(&zero, &mut out);
        assert_eq!(&out[..], &[b'0'; U256_WIDTH][..]);
        assert_eq!(decode_u256(&out), Some(zero));
        assert_eq!(decode_u256(&[b'z'; U256_WIDTH]), None);
        let mut one = [0u8; 32];
        one[31] = 1;
        encode_u256(&one, &mut out);
        assert_eq!(out[U256_WIDTH - 1], b'1');
    }

    #[test]
    fn chunked_decode_matches_digit_by_digit() {
        fn slow(text: &[u8]) -> Option<[u8; 32]> {
            let mut limbs = [0u64; 4];
            for &b in text {
                let mut carry = u128::from(digit(b)?);
                for limb in limbs.iter_mut().rev() {
                    let current = u128::from(*limb) * 62 + carry;
                    *limb = current as u64;
                    carry = current >> 64;
                }
                if carry != 0 {
                    return None;
                }
            }
            let mut out = [0u8; 32];
            for (chunk, limb) in out.chunks_exact_mut(8).zip(limbs.iter()) {
                chunk.copy_from_slice(&limb.to_be_bytes());
            }
            Some(out)
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut text = [0u8; U256_WIDTH];
            for c in text.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *c = ALPHABET[(seed % 62) as usize];
            }
            assert_eq!(decode_u256(&text), slow(&text));
        }
        // Just below and at 2^256.
        let mut max = [0u8; U256_WIDTH];
        encode_u256(&[0xff; 32], &mut max);
        assert_eq!(decode_u256(&max), slow(&max));
        let mut above = max;
        let last = U256_WIDTH - 1;
        above[last] = ALPHABET[usize::from(digit(above[last]).unwrap()) + 1];
        assert_eq!(decode_u256(&above), None);
        assert_eq!(slow(&above), None);
    }

    #[test]
    fn alphabet_order_is_digits_upper_lower() {
        assert_eq!(digit(b'0'), Some(0));
        assert_eq!(digit(b'A'), Some(10));
        assert_eq!(digit(b'a'), Some(36));
        assert_eq!(digit(b'z'), Some(61));
        assert_eq!(digit(b'_'), None);
    }
}
