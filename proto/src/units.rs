//! Human units at the edges: sizes (`64KiB`), durations (`500ms`), and RFC 3339 times.
//!
//! Times are nanoseconds since the Unix epoch inside bus; they are printed as RFC 3339 in
//! UTC with nine fraction digits and parsed from RFC 3339 with any offset and any number of
//! fraction digits. The calendar arithmetic is Howard Hinnant's `days_from_civil` and its
//! inverse.

use std::time::Duration;

use crate::json_out::JsonOut;

/// Parses a size: bytes (`65536`) or an integer with a unit, `B`, `KiB` (also `K`, `k`),
/// `MiB` (`M`), `GiB` (`G`) as powers of 1024, or `KB` (`kB`), `MB`, `GB` as powers of
/// 1000. Strict: no sign, no space, no fraction (`64K` is 65,536; ` 64K`, `64 K`, `+64K`
/// are refused).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid size {s:?}: expected e.g. 65536, 64KiB, 1MiB"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size {s:?} is too large"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Duration units, largest first, with their length in nanoseconds. A compound duration
/// names its units in this order, each at most once.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("min", 60_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("µs", 1_000),
    ("ns", 1),
];

/// Parses a duration: one or more integers each followed by a unit, `d`, `h`, `m` (or
/// `min`), `s`, `ms`, `us` (or `µs`), `ns`, from the largest unit down, each unit at most
/// once: `500ms`, `30s`, `1h30m`, `1m30s`, `2d12h`. Strict: no sign, no space, no fraction,
/// no bare number (`1 s`, `+5s`, `1.5s`, `5` and `30s1m` are refused).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        |why: &str| format!("invalid duration {s:?}: {why} (expected e.g. 500ms, 30s, 1h30m)");
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = s;
    let mut total: u128 = 0;
    // Index in DURATION_UNITS of the last unit seen: the next must come after it.
    let mut last: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("each part is a whole number followed by a unit"));
        }
        let n: u128 = rest[..digits].parse().map_err(|_| bad("too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(bad("a unit is missing"));
        }
        let Some(i) = DURATION_UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(bad(&format!("unknown unit {unit:?}")));
        };
        // `m` and `min` are one unit, as are `us` and `µs`.
        let rank = |i: usize| match DURATION_UNITS[i].0 {
            "min" => 3,
            "µs" => 6,
            _ => i,
        };
        if last.is_some_and(|l| rank(i) <= rank(l)) {
            return Err(bad("units go from the largest down, each at most once"));
        }
        last = Some(i);
        total = n
            .checked_mul(DURATION_UNITS[i].1)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| bad("too large"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad("too large"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC with nanoseconds.
pub fn format_rfc3339(ns: u64) -> String {
    let mut out = String::with_capacity(30);
    write_rfc3339(&mut out, ns);
    out
}

/// The decimal digits of `v` as ASCII, written into the end of `buf` without `fmt`: every
/// event id, receipt and delivered event carries a sequence number.
///
/// ```
/// let mut buf = [0; 20];
/// assert_eq!(bus_proto::units::decimal(0, &mut buf), b"0");
/// assert_eq!(bus_proto::units::decimal(u64::MAX, &mut buf), u64::MAX.to_string().as_bytes());
/// ```
pub fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    while v >= 100 {
        at -= 2;
        buf[at..at + 2].copy_from_slice(pair((v % 100) as usize));
        v /= 100;
    }
    if v >= 10 {
        at -= 2;
        buf[at..at + 2].copy_from_slice(pair(v as usize));
    } else {
        at -= 1;
        buf[at] = b'0' + v as u8;
    }
    &buf[at..]
}

/// `00` to `99`: digits are written two at a time, halving the divisions.
const PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// The two digits of `v` (below 100).
#[inline]
fn pair(v: usize) -> &'static [u8] {
    &PAIRS[2 * v..2 * v + 2]
}

/// Appends the decimal digits of `v` to `out` ([`decimal`]).
///
/// ```
/// let mut out = String::from("seq ");
/// bus_proto::units::push_decimal(&mut out, 1234567);
/// assert_eq!(out, "seq 1234567");
/// ```
pub fn push_decimal(out: &mut impl JsonOut, v: u64) {
    out.push_ascii_bytes(decimal(v, &mut [0; 20]));
}

/// Appends [`format_rfc3339`]'s text to `out`. It runs once per event sent and per receipt,
/// so the fixed-width text is filled two digits at a time, without `fmt`.
pub fn write_rfc3339(out: &mut impl JsonOut, ns: u64) {
    #[inline(always)]
    fn put(field: &mut [u8], v: u64) {
        field.copy_from_slice(pair((v % 100) as usize));
    }
    let secs = (ns / 1_000_000_000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u64;
    let y = y.clamp(0, 9999) as u64;
    let frac = ns % 1_000_000_000;
    let mut text = *b"0000-00-00T00:00:00.000000000Z";
    put(&mut text[0..2], y / 100);
    put(&mut text[2..4], y);
    put(&mut text[5..7], u64::from(mo));
    put(&mut text[8..10], u64::from(d));
    put(&mut text[11..13], sod / 3600);
    put(&mut text[14..16], sod % 3600 / 60);
    put(&mut text[17..19], sod % 60);
    text[20] = b'0' + (frac / 100_000_000) as u8;
    put(&mut text[21..23], frac / 1_000_000);
    put(&mut text[23..25], frac / 10_000);
    put(&mut text[25..27], frac / 100);
    put(&mut text[27..29], frac);
    out.push_ascii_bytes(&text);
}

/// Parses an RFC 3339 time (`2026-11-23T13:22:11.5Z`, `2026-11-23T14:22:11+01:00`; a space
/// or lowercase `t`/`z` are accepted too) into nanoseconds since the epoch. Times before the
/// epoch are refused.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        (!part.is_empty() && part.bytes().all(|c| c.is_ascii_digit())).then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let mut pos = 19;
    let mut nanos: i64 = 0;
    if b.get(pos) == Some(&b'.') {
        let start = pos + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return None;
        }
        let digits = &s[start..end.min(start + 9)];
        nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
        pos = end;
    }
    let offset_secs = match b.get(pos)? {
        b'Z' | b'z' if pos + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let (oh, om) = (num(pos + 1..pos + 3)?, num(pos + 4..pos + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_secs;
    if secs < 0 {
        return None;
    }
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos as u64)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling `proto-docs/http-api.md` defines, with its meaning.
    #[test]
    fn parses_sizes() {
        for (s, n) in [
            ("65536", 65536),
            ("0", 0),
            ("1B", 1),
            ("64KiB", 65536),
            ("64K", 65536),
            ("64k", 65536),
            ("1MiB", 1 << 20),
            ("1M", 1 << 20),
            ("2GiB", 2 << 30),
            ("2G", 2 << 30),
            ("1KB", 1000),
            ("1kB", 1000),
            ("3MB", 3_000_000),
            ("1GB", 1_000_000_000),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for bad in [
            "",
            "x",
            "K",
            "1XB",
            "-1",
            "+1",
            "1.5MiB",
            " 64K",
            "64K ",
            "64 K",
            "64KiBK",
            "99999999999999999999",
            "99999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    /// Every spelling `proto-docs/http-api.md` defines, with its meaning; compound
    /// durations; and what is outside the grammar.
    #[test]
    fn parses_durations() {
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        for (s, d) in [
            ("0s", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("7ns", Duration::from_nanos(7)),
            ("7us", Duration::from_micros(7)),
            ("7µs", Duration::from_micros(7)),
            ("500ms", ms(500)),
            ("30s", secs(30)),
            ("5m", secs(300)),
            ("5min", secs(300)),
            ("1h", secs(3600)),
            ("2d", secs(172_800)),
            ("1h30m", secs(5400)),
            ("1m30s", secs(90)),
            ("1s500ms", ms(1500)),
            ("2d12h", secs(216_000)),
            ("1d2h3m4s5ms6us7ns", Duration::new(93_784, 5_006_007)),
            ("90s", secs(90)),
        ] {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        for bad in [
            "",
            "5",
            "s",
            "5x",
            "-1s",
            "+5s",
            "+5",
            "1.5s",
            "1 s",
            " 1s",
            "1s ",
            "1h 30m",
            "30s1m",
            "1m1m",
            "1m2min",
            "1h30",
            "h1",
            "1sms",
            "99999999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_and_parses_rfc3339() {
        let cases = [
            (0u64, "1970-01-01T00:00:00.000000000Z"),
            (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123456789Z"),
            (951_782_400_000_000_000, "2000-02-29T00:00:00.000000000Z"),
            (4_102_444_800_000_000_001, "2100-01-01T00:00:00.000000001Z"),
            (u64::MAX, "2554-07-21T23:34:33.709551615Z"),
        ];
        for (ns, s) in cases {
            assert_eq!(format_rfc3339(ns), s);
            assert_eq!(parse_rfc3339(s), Some(ns), "{s}");
        }
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.5+01:00"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000_000)
        );
        for bad in [
            "",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-11-14T22:13:20",
            "1969-12-31T23:59:59Z",
            "2023-11-14T22:13:20.Z",
            "user-1-00000000",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// Two digits at a time write what `fmt` does, at every length.
        #[test]
        fn decimals_are_those_of_fmt(v: u64, small in 0u64..1000) {
            for v in [v, small] {
                let mut text = String::new();
                push_decimal(&mut text, v);
                proptest::prop_assert_eq!(text, v.to_string());
            }
        }

        /// Every time written reads back as itself.
        #[test]
        fn rfc3339_times_read_back(ns: u64) {
            let text = format_rfc3339(ns);
            proptest::prop_assert_eq!(text.len(), 30);
            proptest::prop_assert_eq!(parse_rfc3339(&text), Some(ns), "{}", text);
        }
    }
}
