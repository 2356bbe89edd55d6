//! A benchmark without a harness: `cargo rprof bench --cpuprofile cpu.prof`.

use std::time::Instant;

fn main() {
    let start = Instant::now();
    let (n, steps) = demo::longest_chain(std::hint::black_box(2_000_000));
    println!("longest chain below 2,000,000: {n} ({steps} steps) in {:?}", start.elapsed());
}
