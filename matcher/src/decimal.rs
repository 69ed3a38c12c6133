//! Exact conversion between decimal strings and integer counts of `10^exponent` units, for
//! gateways (FIX) and feeds (ITCH) that speak decimals. No floating point.

/// A decimal string that cannot be converted exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not `[-+]digits[.digits]`.
    #[error("not a decimal number")]
    Syntax,
    /// More precision than the unit has (e.g. "1.005" in units of 0.01).
    #[error("decimal has digits below the unit")]
    Precision,
    /// Out of `i64` range.
    #[error("decimal out of range")]
    Range,
}

/// Longest accepted decimal string, in bytes.
pub const DECIMAL_TEXT_LENGTH_MAX: usize = 40;

/// Parses `text` as an exact number of `10^exponent` units: `parse_units("101.25", -2) == Ok(10125)`.
pub fn parse_units(text: &str, exponent: i8) -> Result<i64, DecimalError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > DECIMAL_TEXT_LENGTH_MAX {
        return Err(DecimalError::Syntax);
    }
    let (negative, digits) = match bytes[0] {
        b'-' => (true, &bytes[1..]),
        b'+' => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let mut mantissa: i128 = 0;
    let mut fraction_digits: i32 = 0;
    let mut seen_point = false;
    let mut seen_digit = false;
    for &byte in digits {
        match byte {
            b'0'..=b'9' => {
                seen_digit = true;
                // 40 digits can exceed i128: a number that large is out of range anyway.
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(i128::from(byte - b'0')))
                    .ok_or(DecimalError::Range)?;
                if seen_point {
                    fraction_digits += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return Err(DecimalError::Syntax),
        }
    }
    if !seen_digit {
        return Err(DecimalError::Syntax);
    }
    // value = mantissa * 10^-fraction_digits = units * 10^exponent
    let shift = -fraction_digits - i32::from(exponent);
    let mut units = mantissa;
    if shift >= 0 {
        for _ in 0..shift {
            units = units.checked_mul(10).ok_or(DecimalError::Range)?;
        }
    } else {
        for _ in 0..-shift {
            if units % 10 != 0 {
                return Err(DecimalError::Precision);
            }
            units /= 10;
        }
    }
    if negative {
        units = -units;
    }
    i64::try_from(units).map_err(|_| DecimalError::Range)
}

/// Formats `value` units of `10^exponent` as a decimal without allocating:
/// `format!("{}", Units { value: 10125, exponent: -2 }) == "101.25"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Units {
    /// Integer count of units.
    pub value: i64,
    /// Decimal exponent of the unit.
    pub exponent: i8,
}

impl core::fmt::Display for Units {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let magnitude = self.value.unsigned_abs();
        if self.value < 0 {
            f.write_str("-")?;
        }
        if self.exponent >= 0 {
            write!(f, "{magnitude}")?;
            for _ in 0..self.exponent {
                f.write_str("0")?;
            }
            return Ok(());
        }
        let scale = 10u128.pow(u32::from(self.exponent.unsigned_abs()));
        let whole = u128::from(magnitude) / scale;
        let fraction = u128::from(magnitude) % scale;
        let width = usize::from(self.exponent.unsigned_abs());
        write!(f, "{whole}.{fraction:0width$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_numbers_are_out_of_range_not_a_panic() {
        let nines = "9".repeat(DECIMAL_TEXT_LENGTH_MAX);
        assert_eq!(parse_units(&nines, 0), Err(DecimalError::Range));
        assert_eq!(parse_units(&nines, -2), Err(DecimalError::Range));
        assert_eq!(
            parse_units(&format!("-{}", &nines[1..]), 0),
            Err(DecimalError::Range)
        );
        assert_eq!(
            parse_units(&format!("{}.5", &nines[2..]), -1),
            Err(DecimalError::Range)
        );
        // Long but small: leading zeros and trailing fraction zeros are exact.
        let long_one = format!("{}1", "0".repeat(DECIMAL_TEXT_LENGTH_MAX - 1));
        assert_eq!(parse_units(&long_one, 0), Ok(1));
        let long_fraction = format!("1.{}", "0".repeat(DECIMAL_TEXT_LENGTH_MAX - 2));
        assert_eq!(parse_units(&long_fraction, -2), Ok(100));
    }

    #[test]
    fn parse_and_format() {
        assert_eq!(parse_units("101.25", -2), Ok(10125));
        assert_eq!(parse_units("-0.5", -2), Ok(-50));
        assert_eq!(parse_units("3", 2), Err(DecimalError::Precision));
        assert_eq!(parse_units("300", 2), Ok(3));
        assert_eq!(parse_units("1.005", -2), Err(DecimalError::Precision));
        assert_eq!(parse_units("1.000", -2), Ok(100));
        assert_eq!(parse_units("1.2.3", -2), Err(DecimalError::Syntax));
        assert_eq!(
            parse_units("99999999999999999999", 0),
            Err(DecimalError::Range)
        );
        assert_eq!(
            Units {
                value: 10125,
                exponent: -2
            }
            .to_string(),
            "101.25"
        );
        assert_eq!(
            Units {
                value: -5,
                exponent: -3
            }
            .to_string(),
            "-0.005"
        );
        assert_eq!(
            Units {
                value: 3,
                exponent: 2
            }
            .to_string(),
            "300"
        );
    }
}
