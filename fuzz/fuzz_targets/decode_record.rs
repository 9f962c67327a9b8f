//! The stored key record decoder: arbitrary bytes never panic, and whatever decodes re-encodes
//! to the same bytes (the encoding is canonical). Also: every record encoded here from
//! arbitrary fields (following the documented layout) decodes, and any single bit flip of it
//! is rejected.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use keystead::decode_record_roundtrip;
use keystead_fuzz::{encode_record, hex, RecordFields};
use libfuzzer_sys::fuzz_target;

fn check_canonical(bytes: &[u8]) {
    if let Ok(out) = decode_record_roundtrip(bytes) {
        assert!(
            out == bytes,
            "decoded record re-encodes differently:\n in:  {}\n out: {}",
            hex(bytes),
            hex(&out)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check_canonical(data);
    // The same bytes with a correct CRC-32 trailer, to get past the checksum.
    if data.len() >= 5 {
        let body = &data[..data.len() - 4];
        let fixed = [body, &crc32fast::hash(body).to_le_bytes()].concat();
        check_canonical(&fixed);
    }

    let mut u = Unstructured::new(data);
    let Ok(fields) = RecordFields::arbitrary(&mut u) else {
        return;
    };
    let encoded = encode_record(&fields);
    match decode_record_roundtrip(&encoded) {
        Ok(out) => assert!(
            out == encoded,
            "record re-encodes differently:\n in:  {}\n out: {}",
            hex(&encoded),
            hex(&out)
        ),
        Err(e) => panic!("valid record rejected ({e}): {fields:?}\n{}", hex(&encoded)),
    }
    let bit = u.arbitrary::<u32>().unwrap_or(0) as usize % (encoded.len() * 8);
    let mut flipped = encoded.clone();
    flipped[bit / 8] ^= 1 << (bit % 8);
    assert!(
        decode_record_roundtrip(&flipped).is_err(),
        "bit {bit} flipped not caught: {}",
        hex(&flipped)
    );
});
