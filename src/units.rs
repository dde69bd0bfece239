//! Sizes: parsing `10G`, `512M`, `4096` (binary multiples, as qemu-img) and human formatting.

/// Parses a size: a number with an optional suffix K, M, G, T, P or E (each a power of 1024;
/// `KiB`/`KB`/`k` are accepted spellings). Fractions like `1.5G` are allowed when they give
/// a whole number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        "e" | "eb" | "eib" => 60,
        _ => {
            return Err(format!(
                "invalid size '{s}': use bytes or a suffix K, M, G, T (e.g. 512M, 10G)"
            ));
        }
    };
    let bad = || format!("invalid size '{s}': use bytes or a suffix K, M, G, T (e.g. 512M, 10G)");
    if num.is_empty() {
        return Err(bad());
    }
    let mult = 1u128 << shift;
    let bytes: u128 = if let Some((whole, frac)) = num.split_once('.') {
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        if frac.is_empty() || frac.len() > 18 {
            return Err(bad());
        }
        let frac_num: u128 = frac.parse().map_err(|_| bad())?;
        let denom = 10u128.pow(frac.len() as u32);
        let frac_bytes = frac_num * mult;
        if frac_bytes % denom != 0 {
            return Err(format!("size '{s}' is not a whole number of bytes"));
        }
        whole * mult + frac_bytes / denom
    } else {
        num.parse::<u128>().map_err(|_| bad())? * mult
    };
    u64::try_from(bytes).map_err(|_| format!("size '{s}' is too large"))
}

/// Human-readable binary size, e.g. `4.0 MiB`, `512 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert!(parse_size("").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("0.1K").is_err());
        assert!(parse_size("99999999999E").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(4 << 20), "4.0 MiB");
        assert_eq!(format_size(1536), "1.5 KiB");
    }
}
