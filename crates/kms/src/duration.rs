//! Go-style durations, as the Vault API takes and prints them: `"768h"`, `"1h30m"`, `"90s"`,
//! `"0s"`, a bare number of seconds (JSON number or string).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("time: invalid duration \"{0}\"")]
pub struct DurationError(pub String);

/// Parse to whole seconds (sub-second parts are truncated, as Vault's TTLs are).
pub fn parse_secs(s: &str) -> Result<u64, DurationError> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(0);
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let err = || DurationError(s.to_string());
    let mut total: f64 = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_end == 0 {
            return Err(err());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(err()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > u64::MAX as f64 / 2.0 {
        return Err(err());
    }
    Ok(total as u64)
}

/// Format like Go's `time.Duration.String()` for whole seconds: `768h0m0s`, `1m30s`, `0s`.
pub fn format_go(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// The short form Vault uses in warnings and tune output: `768h`, `1h30m`, `45s`.
pub fn format_short(secs: u64) -> String {
    let g = format_go(secs);
    let g = g
        .strip_suffix("0s")
        .filter(|r| !r.is_empty())
        .unwrap_or(&g)
        .to_string();
    g.strip_suffix("0m")
        .filter(|r| r.ends_with('h'))
        .map(|r| r.to_string())
        .unwrap_or(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_secs("768h").unwrap(), 2764800);
        assert_eq!(parse_secs("1h30m").unwrap(), 5400);
        assert_eq!(parse_secs("90").unwrap(), 90);
        assert_eq!(parse_secs("0s").unwrap(), 0);
        assert_eq!(parse_secs("1.5h").unwrap(), 5400);
        assert_eq!(parse_secs("").unwrap(), 0);
        assert!(parse_secs("abc").is_err());
        assert!(parse_secs("10x").is_err());
        assert!(parse_secs("-5s").is_err());
        assert!(parse_secs("h").is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go(2764800), "768h0m0s");
        assert_eq!(format_go(90), "1m30s");
        assert_eq!(format_go(0), "0s");
        assert_eq!(format_short(2764800), "768h");
        assert_eq!(format_short(5400), "1h30m");
        assert_eq!(format_short(45), "45s");
        assert_eq!(format_short(0), "0s");
    }
}
