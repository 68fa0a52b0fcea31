//! Number parsing with the exact semantics of C's strtol/strtoul, because the C library parses
//! replies and permission strings with them and callers see the difference (base prefixes,
//! signs, leading blanks, saturation, stopping at the first non-digit).

/// The result of scanning an integer as strtol/strtoul do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scan {
    negative: bool,
    /// Magnitude, saturated at u64::MAX.
    magnitude: u64,
    overflow: bool,
    /// Bytes consumed; 0 when no number was found (the C end pointer stays at the start).
    end: usize,
}

fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Scans like strtol with `base` 0 (auto: 0x hex, leading 0 octal, else decimal) or 2..=36.
/// The input ends at its first NUL, as a C string would.
fn scan(s: &[u8], base: u32) -> Scan {
    let s = &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())];
    let none = Scan {
        negative: false,
        magnitude: 0,
        overflow: false,
        end: 0,
    };
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let digit = |c: u8| (c as char).to_digit(36);
    let mut base = base;
    let hex_prefix = i + 1 < s.len()
        && s[i] == b'0'
        && (s[i + 1] | 0x20) == b'x'
        && s.get(i + 2).and_then(|&c| digit(c)).is_some_and(|d| d < 16);
    if (base == 0 || base == 16) && hex_prefix {
        base = 16;
        i += 2;
    } else if base == 0 {
        base = if s.get(i) == Some(&b'0') { 8 } else { 10 };
    }
    let start = i;
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    while let Some(d) = s.get(i).and_then(|&c| digit(c)).filter(|&d| d < base) {
        match magnitude
            .checked_mul(base as u64)
            .and_then(|m| m.checked_add(d as u64))
        {
            Some(m) => magnitude = m,
            None => {
                overflow = true;
                magnitude = u64::MAX;
            }
        }
        i += 1;
    }
    if i == start {
        return none;
    }
    Scan {
        negative,
        magnitude,
        overflow,
        end: i,
    }
}

/// C `strtoul(s, &end, base)` on an LP64 system: the value and the number of bytes consumed.
pub fn strtoul(s: &[u8], base: u32) -> (u64, usize) {
    let r = scan(s, base);
    if r.overflow {
        return (u64::MAX, r.end);
    }
    let v = if r.negative {
        r.magnitude.wrapping_neg()
    } else {
        r.magnitude
    };
    (v, r.end)
}

/// C `strtol(s, &end, base)` on an LP64 system: the value and the number of bytes consumed.
pub fn strtol(s: &[u8], base: u32) -> (i64, usize) {
    let r = scan(s, base);
    let v = if r.negative {
        if r.overflow || r.magnitude > i64::MAX as u64 + 1 {
            i64::MIN
        } else {
            (r.magnitude as i64).wrapping_neg()
        }
    } else if r.overflow || r.magnitude > i64::MAX as u64 {
        i64::MAX
    } else {
        r.magnitude as i64
    };
    (v, r.end)
}

/// C `atoi` as glibc implements it: `(int)strtol(s, NULL, 10)`.
pub fn atoi(s: &[u8]) -> i32 {
    strtol(s, 10).0 as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoul_matches_c() {
        assert_eq!(strtoul(b"42", 0), (42, 2));
        assert_eq!(strtoul(b"0x1f", 0), (31, 4));
        assert_eq!(strtoul(b"017", 0), (15, 3));
        assert_eq!(strtoul(b"09", 0), (0, 1)); // octal stops at 9
        assert_eq!(strtoul(b"  +7z", 10), (7, 4));
        assert_eq!(strtoul(b"-1", 10), (u64::MAX, 2));
        assert_eq!(strtoul(b"0x", 0), (0, 1)); // "0" parsed, "x" left
        assert_eq!(strtoul(b"", 0), (0, 0));
        assert_eq!(strtoul(b"abc", 10), (0, 0));
        assert_eq!(strtoul(b"99999999999999999999999", 10).0, u64::MAX);
        assert_eq!(strtoul(b"12\x0034", 10), (12, 2));
    }

    #[test]
    fn strtol_matches_c() {
        assert_eq!(strtol(b"-5", 0), (-5, 2));
        assert_eq!(strtol(b"99999999999999999999", 0).0, i64::MAX);
        assert_eq!(strtol(b"-99999999999999999999", 0).0, i64::MIN);
        assert_eq!(strtol(b"-9223372036854775808", 10).0, i64::MIN);
        assert_eq!(strtol(b" ", 0), (0, 0));
        assert_eq!(atoi(b"4294967297"), 1); // truncated like (int)long
        assert_eq!(atoi(b"12abc"), 12);
    }
}
