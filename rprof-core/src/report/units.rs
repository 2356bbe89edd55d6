//! pprof's unit scaling and percentages (`internal/measurement` in google/pprof), digit for digit.

/// One unit of a family: its printed name, the spellings it is recognized by (lower case, no
/// plural `s`), and how many base units it holds.
struct Unit {
    name: &'static str,
    aliases: &'static [&'static str],
    factor: f64,
}

/// A family of convertible units (memory, time, GCU) and the unit used when none fits.
struct UnitType {
    default_name: &'static str,
    default_factor: f64,
    units: &'static [Unit],
}

const fn unit(name: &'static str, aliases: &'static [&'static str], factor: f64) -> Unit {
    Unit {
        name,
        aliases,
        factor,
    }
}

const KB: f64 = 1024.0;

static UNIT_TYPES: [UnitType; 3] = [
    UnitType {
        default_name: "B",
        default_factor: 1.0,
        units: &[
            unit("B", &["b", "byte"], 1.0),
            unit("kB", &["kb", "kbyte", "kilobyte"], KB),
            unit("MB", &["mb", "mbyte", "megabyte"], KB * KB),
            unit("GB", &["gb", "gbyte", "gigabyte"], KB * KB * KB),
            unit("TB", &["tb", "tbyte", "terabyte"], KB * KB * KB * KB),
            unit("PB", &["pb", "pbyte", "petabyte"], KB * KB * KB * KB * KB),
        ],
    },
    UnitType {
        default_name: "s",
        default_factor: 1e9,
        units: &[
            unit("ns", &["ns", "nanosecond"], 1.0),
            unit("us", &["μs", "us", "microsecond"], 1e3),
            unit("ms", &["ms", "millisecond"], 1e6),
            unit("s", &["s", "sec", "second"], 1e9),
            unit("hrs", &["hour", "hr"], 3600e9),
        ],
    },
    UnitType {
        default_name: "GCU",
        default_factor: 1.0,
        units: &[
            unit("n*GCU", &["nanogcu"], 1e-9),
            unit("u*GCU", &["microgcu"], 1e-6),
            unit("m*GCU", &["milligcu"], 1e-3),
            unit("GCU", &["gcu"], 1.0),
            unit("k*GCU", &["kilogcu"], 1e3),
            unit("M*GCU", &["megagcu"], 1e6),
            unit("G*GCU", &["gigagcu"], 1e9),
            unit("T*GCU", &["teragcu"], 1e12),
            unit("P*GCU", &["petagcu"], 1e15),
        ],
    },
];

impl UnitType {
    /// The unit spelled `unit`, ignoring case and a plural `s` (pprof's `sniffUnit`).
    fn sniff(&self, unit: &str) -> Option<&Unit> {
        let lower = unit.to_lowercase();
        let alias = if lower.len() > 2 {
            lower.strip_suffix('s').unwrap_or(&lower)
        } else {
            &lower
        };
        self.units.iter().find(|u| u.aliases.contains(&alias))
    }

    /// The largest unit in which `value` (in base units) is at least 1.
    fn auto_scale(&self, value: f64) -> Option<(f64, &'static str)> {
        let mut best: Option<&Unit> = None;
        for u in self.units {
            if u.factor >= best.map_or(0.0, |b| b.factor) && value / u.factor >= 1.0 {
                best = Some(u);
            }
        }
        best.map(|u| (value / u.factor, u.name))
    }

    fn convert(&self, value: i64, from: &str, to: &str) -> Option<(f64, &'static str)> {
        let from = self.sniff(from)?;
        let v = value as f64 * from.factor;
        if to == "minimum" || to == "auto" {
            return Some(
                self.auto_scale(v)
                    .unwrap_or((v / self.default_factor, self.default_name)),
            );
        }
        Some(match self.sniff(to) {
            Some(to) => (v / to.factor, to.name),
            None => (v / self.default_factor, self.default_name),
        })
    }
}

/// `value` in unit `from`, converted to unit `to` (or the best unit for `auto` / `minimum`), and
/// the name of the unit it ended in; the name is empty for units not worth printing (counts).
pub(crate) fn scale(value: i64, from: &str, to: &str) -> (f64, String) {
    if value < 0 && value != i64::MIN {
        let (v, u) = scale(-value, from, to);
        return (-v, u);
    }
    for ut in &UNIT_TYPES {
        if let Some((v, u)) = ut.convert(value, from, to) {
            return (v, u.to_owned());
        }
    }
    match to {
        "count" | "sample" | "unit" | "minimum" | "auto" => (value as f64, String::new()),
        _ => (value as f64, to.to_owned()),
    }
}

/// `text` — a number with an optional unit, as pprof's flags take them (`10ms`, `1.5MB`, `3`) —
/// as a whole number of `to` units (rounded to the nearest). A bare number is already in `to`.
/// `None` when the text is not a number or its unit is not convertible to `to` (`10ms` of bytes).
pub(crate) fn parse_quantity(text: &str, to: &str) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    if !number.is_finite() {
        return None;
    }
    if unit.is_empty() {
        return Some(number.round() as i64);
    }
    let converted = UNIT_TYPES.iter().find_map(|ut| {
        let (from, to) = (ut.sniff(unit)?, ut.sniff(to)?);
        Some(number * from.factor / to.factor)
    })?;
    Some(converted.round() as i64)
}

/// `value` in unit `from` printed in unit `to`, two decimals unless they are zeros.
pub(crate) fn scaled_label(value: i64, from: &str, to: &str) -> String {
    let (v, u) = scale(value, from, to);
    let s = format!("{v:.2}");
    let s = s.strip_suffix(".00").unwrap_or(&s);
    if s == "0" || s == "-0" {
        return "0".to_owned();
    }
    format!("{s}{u}")
}

/// `value` as a percentage of `total`, five characters wide as pprof prints it: `64.89%`,
/// ` 0.65%`, `  100%`, `0.0012%`.
pub(crate) fn percentage(value: i64, total: i64) -> String {
    let ratio = if total != 0 {
        (value as f64 / total as f64).abs() * 100.0
    } else {
        0.0
    };
    if (99.95..=100.05).contains(&ratio) {
        "  100%".to_owned()
    } else if ratio >= 1.0 {
        format!("{ratio:5.2}%")
    } else {
        format!("{:>5}%", go_g2(ratio))
    }
}

/// Go's `%.2g`: two significant digits, trailing zeros dropped, exponent form outside
/// `1e-4 ..< 1e2`.
fn go_g2(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() {
            "0".to_owned()
        } else {
            v.to_string()
        };
    }
    // Rounding to two significant digits first decides the exponent, as in Go.
    let e = format!("{v:.1e}");
    let (mantissa, exp) = e.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    if !(-4..2).contains(&exp) {
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let decimals = (1 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_scaling_matches_pprof() {
        let cases = [
            (1_880_000_000, "nanoseconds", "1.88s"),
            (10_000_000, "nanoseconds", "10ms"),
            (1_500, "nanoseconds", "1.50us"),
            (999, "nanoseconds", "999ns"),
            (0, "nanoseconds", "0"),
            (-2_000_000, "nanoseconds", "-2ms"),
            (7_200_000_000_000, "nanoseconds", "2hrs"),
            (3, "microseconds", "3us"),
            (1_572_864, "bytes", "1.50MB"),
            (1024, "bytes", "1kB"),
            (1000, "bytes", "1000B"),
            (12_345, "count", "12345"),
            (7, "objects", "7"),
            (5, "widgets", "5"),
        ];
        for (value, unit, want) in cases {
            assert_eq!(scaled_label(value, unit, "auto"), want, "{value} {unit}");
        }
    }

    #[test]
    fn fixed_output_units() {
        assert_eq!(scaled_label(30_000_000, "nanoseconds", "s"), "0.03s");
        assert_eq!(scaled_label(4_999_999, "nanoseconds", "s"), "0");
        assert_eq!(scaled_label(5_000_000, "nanoseconds", "s"), "0.01s");
        assert_eq!(scaled_label(1_000_000_000, "nanoseconds", "s"), "1s");
        assert_eq!(scaled_label(512, "bytes", "kB"), "0.50kB");
        assert_eq!(scaled_label(12, "count", "count"), "12");
        assert_eq!(scaled_label(5, "widgets", "widgets"), "5widgets");
    }

    #[test]
    fn quantities_convert_to_the_sample_unit() {
        assert_eq!(parse_quantity("10ms", "nanoseconds"), Some(10_000_000));
        assert_eq!(parse_quantity("1.5s", "nanoseconds"), Some(1_500_000_000));
        assert_eq!(parse_quantity("1MB", "bytes"), Some(1 << 20));
        assert_eq!(parse_quantity("3", "count"), Some(3));
        assert_eq!(parse_quantity("250", "nanoseconds"), Some(250));
        assert_eq!(parse_quantity("10ms", "bytes"), None, "time is not memory");
        assert_eq!(parse_quantity("1kB", "count"), None);
        assert_eq!(parse_quantity("ms", "nanoseconds"), None);
        assert_eq!(parse_quantity("", "count"), None);
    }

    #[test]
    fn percentages_match_go_formatting() {
        assert_eq!(percentage(1, 1), "  100%");
        assert_eq!(percentage(6489, 10000), "64.89%");
        assert_eq!(percentage(65, 10000), " 0.65%");
        assert_eq!(percentage(5, 1000), "  0.5%");
        assert_eq!(percentage(0, 1000), "    0%");
        assert_eq!(percentage(0, 0), "    0%");
        assert_eq!(percentage(1, 100_000), "0.001%");
        assert_eq!(percentage(1, 10_000_000), "1e-05%");
        assert_eq!(percentage(-5, 100), " 5.00%");
        assert_eq!(percentage(9999, 1_000_000), "    1%");
    }
}
