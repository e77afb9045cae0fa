//! RFC 3339 UTC timestamps (`2026-11-28T02:26:09Z`), the text form of every time on the wire
//! and in token claims.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::UnixSeconds;

/// The length of an RFC 3339 UTC timestamp with a four-digit year.
pub const FOUR_DIGIT_YEAR_LENGTH: usize = 20;

const SECONDS_PER_DAY: i64 = 86_400;

/// Formats by hand for the years 0000 to 9999 (every answer formats a few timestamps, and
/// the `time` crate's general formatter was a visible share of a session listing); `time`
/// formats anything outside that range.
pub fn format_rfc3339(seconds: UnixSeconds) -> String {
    let mut buffer = [0u8; FOUR_DIGIT_YEAR_LENGTH];
    match format_rfc3339_into(seconds, &mut buffer) {
        Some(text) => text.to_owned(),
        None => OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .and_then(|moment| moment.format(&Rfc3339).ok())
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned()),
    }
}

/// Writes the timestamp into `buffer` and returns it as text, for the years 0000 to 9999
/// (answers write it straight into their JSON); `None` outside them.
pub fn format_rfc3339_into(
    seconds: UnixSeconds,
    buffer: &mut [u8; FOUR_DIGIT_YEAR_LENGTH],
) -> Option<&str> {
    let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
    if !(0..=9999).contains(&year) {
        return None;
    }
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    *buffer = *b"0000-00-00T00:00:00Z";
    for (position, value) in [
        (0, year / 100),
        (2, year % 100),
        (5, month),
        (8, day),
        (11, second_of_day / 3600),
        (14, second_of_day / 60 % 60),
        (17, second_of_day % 60),
    ] {
        // `value` is in 0..100, so each digit fits; the slots are inside the buffer.
        let digits = [value / 10 % 10, value % 10].map(|digit| b'0' + digit as u8);
        buffer[position..position + 2].copy_from_slice(&digits);
    }
    std::str::from_utf8(buffer).ok()
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01, by the
/// well-known era arithmetic (eras of 400 years, years starting in March).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn parse_rfc3339(text: &str) -> Option<UnixSeconds> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn the_hand_formatter_agrees_with_the_time_crate(seconds in -62_167_219_200_i64..253_402_300_800) {
            let expected = OffsetDateTime::from_unix_timestamp(seconds)
                .ok()
                .and_then(|moment| moment.format(&Rfc3339).ok());
            proptest::prop_assert_eq!(Some(format_rfc3339(seconds)), expected);
        }
    }

    #[test]
    fn formats_the_edges_of_the_range() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-62_167_219_200), "0000-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(i64::MAX), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn round_trips_in_utc() {
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
