//! uniffi's binding generator, built from the workspace at the same uniffi
//! version as the library (bindings and library must agree on it). Library
//! mode reads the interface from the built shared library:
//! `uniffi-bindgen generate target/debug/libaftercase_ffi.so --language kotlin --out-dir out`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
