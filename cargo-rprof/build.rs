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
    let target_dir = out.join("preload-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--lib",
        "--no-default-features",
        "--features",
        "preload",
        "--manifest-path",
    ])
    .arg(harness.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir)
    // The outer build's settings are for cargo-rprof, not for the library we build here.
    .env_remove("RUSTFLAGS")
    // The harness walks frame pointers through its own frames (allocation stacks).
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
    let so = target_dir.join("release/librprof_harness.so");
    let bytes = std::fs::read(&so).expect("the preload library was not built");
    println!("cargo:rustc-env=RPROF_PRELOAD_SO={}", so.display());
    println!("cargo:rustc-env=RPROF_PRELOAD_HASH={:016x}", fnv1a(&bytes));
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
