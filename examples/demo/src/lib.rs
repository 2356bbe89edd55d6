//! A small crate to try rprof on: `cargo rprof test --cpuprofile cpu.prof`.
//!
//! `collatz_steps` is where the time goes; `digit_sum` costs about a fifth as much.

/// Steps the Collatz sequence takes from `n` to 1. The demo's hot function.
#[inline(never)]
pub fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// Sum of the decimal digits of `n`.
#[inline(never)]
pub fn digit_sum(mut n: u64) -> u64 {
    let mut sum = 0;
    while n > 0 {
        sum += n % 10;
        n /= 10;
    }
    sum
}

/// The longest Collatz chain below `limit`, as (start, steps).
pub fn longest_chain(limit: u64) -> (u64, u32) {
    (1..limit)
        .map(|n| (n, collatz_steps(n)))
        .max_by_key(|&(_, steps)| steps)
        .unwrap_or((1, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_chain_below_three_million() {
        assert_eq!(longest_chain(3_000_000), (2_298_025, 559));
    }

    #[test]
    fn digit_sums() {
        let total: u64 = (0..2_000_000u64).map(digit_sum).sum();
        assert_eq!(total, 55_000_000);
        assert_eq!(digit_sum(9_875), 29);
    }
}
