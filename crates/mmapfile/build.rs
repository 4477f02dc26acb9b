//! Chooses how the POSIX backend runs named blocks, as `cfg` names that the
//! code in `src/os/unix/` tests:
//!
//! - `portable_lifetime`: the holder protocol of macOS and the BSDs (a lock
//!   file per name, `os/unix/lifetime_portable.rs`) instead of Linux's.
//! - `macos_limits`: macOS's limits shape the code (object names of at most
//!   31 bytes, a shared-memory object sized once, no open-file-description
//!   locks, no `memfd`).
//! - `simulated`: a Linux build with the `simulate-macos` feature, which
//!   gets both of the above and also imposes macOS's limits on itself, so
//!   that the whole test suite proves on Linux what macOS would do.

fn main() {
    for name in ["portable_lifetime", "macos_limits", "simulated"] {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let unix =
        std::env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|f| f.split(',').any(|f| f == "unix"));
    let linux = matches!(os.as_str(), "linux" | "android");
    let simulated = linux && std::env::var_os("CARGO_FEATURE_SIMULATE_MACOS").is_some();
    if unix && (!linux || simulated) {
        println!("cargo::rustc-cfg=portable_lifetime");
    }
    if matches!(
        os.as_str(),
        "macos" | "ios" | "tvos" | "watchos" | "visionos"
    ) || simulated
    {
        println!("cargo::rustc-cfg=macos_limits");
    }
    if simulated {
        println!("cargo::rustc-cfg=simulated");
    }
}
