//! Timestamps: reading the forms Python loggers write (ISO-8601 from structlog's
//! `TimeStamper(fmt="iso")`, `datetime.isoformat()`, epoch seconds) and writing RFC 3339.
//! Hand-written because it runs once per record on the hot path and the forms are few.

/// Parses an ISO-8601 / RFC 3339 timestamp to Unix nanoseconds. Accepts a `T` or a space
/// between date and time, 0–9 fractional digits, and `Z`, `±HH:MM`, `±HHMM` or no zone
/// (taken as UTC, which is what structlog writes with `utc=True`).
pub fn parse_iso8601(s: &[u8]) -> Option<i64> {
    if s.len() < 19 {
        return None;
    }
    let year = digits(s, 0, 4)? as i64;
    if s[4] != b'-' || s[7] != b'-' || !(s[10] == b'T' || s[10] == b' ' || s[10] == b't') {
        return None;
    }
    let month = digits(s, 5, 2)?;
    let day = digits(s, 8, 2)?;
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let hour = digits(s, 11, 2)?;
    let minute = digits(s, 14, 2)?;
    let second = digits(s, 17, 2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // 60 is a leap second; Unix time folds it into the next minute's first second.
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if s.get(i) == Some(&b'.') || s.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while let Some(c @ b'0'..=b'9') = s.get(i) {
            if i - start < 9 {
                nanos = nanos * 10 + (c - b'0') as i64;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let offset_seconds: i64 = match s.get(i) {
        None => 0,
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let sign = if *sign == b'-' { -1 } else { 1 };
            let hh = digits(s, i + 1, 2)? as i64;
            let (mm, len) = if s.get(i + 3) == Some(&b':') {
                (digits(s, i + 4, 2)? as i64, 6)
            } else if s.len() >= i + 5 {
                (digits(s, i + 3, 2)? as i64, 5)
            } else {
                (0, 3)
            };
            i += len;
            sign * (hh * 3600 + mm * 60)
        }
        Some(_) => return None,
    };
    if i != s.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs =
        days * 86_400 + hour as i64 * 3600 + minute as i64 * 60 + second as i64 - offset_seconds;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Parses an epoch timestamp given as a JSON number. Seconds are what Python writes
/// (`time.time()`); magnitudes that only make sense as milli-, micro- or nanoseconds are
/// read as such, as Vector and Fluent Bit do.
pub fn parse_epoch(s: &str) -> Option<i64> {
    // Integer and fraction are read as text: an f64 cannot hold nanoseconds of today.
    let (int_part, frac_part) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if !frac_part.bytes().all(|c| c.is_ascii_digit()) {
        // Exponent notation: rare enough for f64 precision to do.
        let v: f64 = s.parse().ok()?;
        return (v.is_finite() && (0.0..1e11).contains(&v)).then(|| (v * 1e9).round() as i64);
    }
    let whole: i64 = int_part.parse().ok()?;
    if whole < 0 {
        return None;
    }
    // Seconds, milliseconds, microseconds or nanoseconds, by magnitude.
    let scale: i64 = match whole {
        0..100_000_000_000 => 1_000_000_000,
        100_000_000_000..100_000_000_000_000 => 1_000_000,
        100_000_000_000_000..100_000_000_000_000_000 => 1_000,
        _ => 1,
    };
    let mut frac: i64 = 0;
    let mut unit = scale;
    for c in frac_part.bytes() {
        if unit < 10 {
            break;
        }
        unit /= 10;
        frac += (c - b'0') as i64 * unit;
    }
    whole.checked_mul(scale)?.checked_add(frac)
}

/// Parses the Common Log Format time of access logs: `23/Nov/2026:19:49:24 +0000`.
pub fn parse_clf(s: &[u8]) -> Option<i64> {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    if s.len() != 26 || s[2] != b'/' || s[6] != b'/' || s[11] != b':' || s[20] != b' ' {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == &s[3..6])? + 1;
    let mut iso = [0u8; 25];
    iso[..4].copy_from_slice(&s[7..11]);
    iso[4] = b'-';
    iso[5] = b'0' + (month / 10) as u8;
    iso[6] = b'0' + (month % 10) as u8;
    iso[7] = b'-';
    iso[8..10].copy_from_slice(&s[0..2]);
    iso[10] = b'T';
    iso[11..19].copy_from_slice(&s[12..20]);
    iso[19..24].copy_from_slice(&s[21..26]);
    parse_iso8601(&iso[..24])
}

/// Parses `2026-11-23 19:49:24 +0000` (gunicorn's error log): ISO-8601 with a space
/// before the zone.
pub fn parse_spaced_offset(s: &[u8]) -> Option<i64> {
    match s.iter().rposition(|&c| c == b' ') {
        Some(at) if at > 10 => {
            let mut joined = [0u8; 48];
            let rest = &s[at + 1..];
            if at + rest.len() > joined.len() {
                return None;
            }
            joined[..at].copy_from_slice(&s[..at]);
            joined[at..at + rest.len()].copy_from_slice(rest);
            parse_iso8601(&joined[..at + rest.len()])
        }
        _ => parse_iso8601(s),
    }
}

fn digits(s: &[u8], at: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for k in 0..n {
        let c = *s.get(at + k)?;
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `nanos` as an RFC 3339 UTC string (see `write_rfc3339`).
pub fn rfc3339(nanos: i64) -> String {
    let mut out = Vec::with_capacity(32);
    write_rfc3339(&mut out, nanos);
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends `nanos` as RFC 3339 UTC with microsecond precision when it has a fraction
/// (`2026-11-23T19:49:24.123456Z`), whole seconds otherwise.
pub fn write_rfc3339(out: &mut Vec<u8>, nanos: i64) {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    push2(out, y / 100);
    push2(out, y % 100);
    out.push(b'-');
    push2(out, m as i64);
    out.push(b'-');
    push2(out, d as i64);
    out.push(b'T');
    push2(out, sod / 3600);
    out.push(b':');
    push2(out, sod / 60 % 60);
    out.push(b':');
    push2(out, sod % 60);
    if frac != 0 {
        out.push(b'.');
        let mut v = frac;
        let mut digits = [0u8; 9];
        for k in (0..9).rev() {
            digits[k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        // Microseconds when the nanoseconds are zero, as Python writes them.
        let len = if frac % 1000 == 0 { 6 } else { 9 };
        out.extend_from_slice(&digits[..len]);
    }
    out.push(b'Z');
}

fn push2(out: &mut Vec<u8>, v: i64) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc(nanos: i64) -> String {
        let mut out = Vec::new();
        write_rfc3339(&mut out, nanos);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_the_forms_python_writes() {
        let base = parse_iso8601(b"2026-11-23T19:49:24Z").unwrap();
        assert_eq!(base, 1_795_463_364_000_000_000);
        let cases: &[(&str, i64)] = &[
            ("2026-11-23T19:49:24.123456Z", base + 123_456_000),
            ("2026-11-23T19:49:24.123456", base + 123_456_000),
            ("2026-11-23 19:49:24.5+00:00", base + 500_000_000),
            ("2026-11-23T20:49:24+01:00", base),
            ("2026-11-23T18:49:24-0100", base),
            ("2026-11-23T19:49:24.123456789123Z", base + 123_456_789),
        ];
        for (input, want) in cases {
            assert_eq!(parse_iso8601(input.as_bytes()), Some(*want), "{input}");
        }
        for bad in [
            "2026-13-23T19:49:24Z",
            "yesterday",
            "2026-11-23T19:49:24Q",
            "",
        ] {
            assert_eq!(parse_iso8601(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn parses_epochs_of_any_unit() {
        let s = 1_795_463_364i64;
        assert_eq!(
            parse_epoch("1795463364.25"),
            Some(s * 1_000_000_000 + 250_000_000)
        );
        assert_eq!(
            parse_epoch("1795463364250"),
            Some(s * 1_000_000_000 + 250_000_000)
        );
        assert_eq!(parse_epoch("-5"), None);
    }

    #[test]
    fn writes_rfc3339_and_round_trips() {
        for nanos in [
            0,
            1_795_463_364_123_456_000,
            951_782_400_000_000_001,
            -86_400_000_000_000,
        ] {
            let text = rfc(nanos);
            assert_eq!(parse_iso8601(text.as_bytes()), Some(nanos), "{text}");
        }
        assert_eq!(
            rfc(1_795_463_364_123_456_000),
            "2026-11-23T19:49:24.123456Z"
        );
        assert_eq!(rfc(0), "1970-01-01T00:00:00Z");
    }
}
