//! Builds the preload library (rprof-harness as a cdylib with feature `preload`) and embeds it:
//! `cargo install --path cargo-rprof` is then the only install step.
//!
//! A nested `cargo build` of the sibling crate, into its own target directory under OUT_DIR, so
//! it never contends with the outer build's locks.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap();
    let harness = root.join("rprof-harness");
    for dir in [harness.join("src"), root.join("rprof-core/src")] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    for file in [
        "rprof-harness/Cargo.toml",
        "rprof-core/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    println!(
        "cargo:rustc-env=RPROF_HOST_TARGET={}",
        env::var("TARGET").unwrap()
    );

    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    // Three libraries from one target directory (later builds reuse every dependency): one
    // with the malloc interposer, for memory profiles, one without, so that CPU, block and
    // mutex profiles do not slow down every allocation, and one that also serves live profiles.
    for (features, name, var) in [
        (
            "preload",
            "librprof_preload_light.so",
            "RPROF_PRELOAD_LIGHT",
        ),
        (
            "preload,preload-malloc",
            "librprof_preload.so",
            "RPROF_PRELOAD",
        ),
        // The live endpoints (`cargo rprof run --http`): the memory profiler and an in-process
        // symbolizer besides; only runs that serve profiles pay for its size.
        (
            "preload,preload-malloc,http",
            "librprof_preload_http.so",
            "RPROF_PRELOAD_HTTP",
        ),
    ] {
        let so = build_preload(&harness, &out.join("preload-target"), features);
        let bytes = std::fs::read(&so).expect("the preload library was not built");
        let kept = out.join(name);
        std::fs::write(&kept, &bytes).expect("cannot copy the preload library");
        println!("cargo:rustc-env={var}_SO={}", kept.display());
        println!("cargo:rustc-env={var}_HASH={:016x}", fnv1a(&bytes));
    }
}

/// `cargo build` rprof-harness as the preload cdylib with `features`; returns the library.
fn build_preload(
    harness: &std::path::Path,
    target_dir: &std::path::Path,
    features: &str,
) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--lib",
        "--no-default-features",
        "--features",
        features,
        "--manifest-path",
    ])
    .arg(harness.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(target_dir)
    // The outer build's settings are for cargo-rprof, not for the library we build here.
    .env_remove("RUSTFLAGS")
    // The harness's own frames (under every allocation and wait sample) step fastest by frame
    // pointer: the unwinder uses them where the CFI says the frame has one.
    .env("CARGO_ENCODED_RUSTFLAGS", "-Cforce-frame-pointers=yes")
    .env_remove("CARGO_TARGET_DIR")
    .env_remove("CARGO_BUILD_TARGET")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
    .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
    .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
    .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
    .env("CARGO_PROFILE_RELEASE_LTO", "false")
    .env("CARGO_PROFILE_RELEASE_PANIC", "unwind");
    let status = cmd
        .status()
        .expect("cannot run cargo to build the preload library");
    assert!(status.success(), "building the preload library failed");
    target_dir.join("release/librprof_harness.so")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
