//! The config parser and validator against arbitrary text: never a panic,
//! always an error that names the file.

#![no_main]

use herald::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse("fuzz.toml", text) {
        Ok(config) => {
            if let Err(e) = config.validate() {
                assert!(!e.to_string().is_empty());
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.toml"), "{e}"),
    }
});
