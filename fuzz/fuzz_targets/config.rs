//! The config loader: any file text (TOML, then keygate's own checks: unknown keys, inline
//! secrets, URLs, lifetimes...) gives a `Config` or a `ConfigError`, never a panic. The
//! loader reads a path, so each input is written to a scratch file first.
#![no_main]

use keygate::Config;
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static std::path::Path {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("keygate-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(scratch(), data).expect("write the scratch config");
    if let Ok(config) = Config::load(Some(scratch()), std::iter::empty()) {
        // What loaded has passed validation, so these hold.
        assert!(config.validate().is_ok());
        assert!(config.origin().is_ok());
        assert!(config.rp_id().is_ok());
        let _ = config.warnings();
    }
});
