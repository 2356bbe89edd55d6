//! `cargo rprof`: see the crate's library docs and the README.

fn main() {
    std::process::exit(cargo_rprof::main());
}
