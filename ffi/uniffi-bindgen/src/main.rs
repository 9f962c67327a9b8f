//! `cargo run -p uniffi-bindgen -- generate --library <libkeystead_ffi.so> --language swift ...`
//!
//! Lives in the workspace so the generator is always the uniffi version the ffi crate's
//! scaffolding was built with (a mismatch gives bindings that fail their checksum checks).

fn main() {
    uniffi::uniffi_bindgen_main()
}
