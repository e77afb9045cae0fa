//! RFC 3339 UTC timestamps (`2026-11-28T02:26:09Z`), the text form of every time on the wire
//! and in token claims.

use std::borrow::Cow;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::UnixSeconds;

/// The length of an RFC 3339 UTC timestamp with a four-digit year.
pub const FOUR_DIGIT_YEAR_LENGTH: usize = 20;

/// The first instant RFC 3339 can write, `0000-01-01T00:00:00Z`: its years have four digits.
pub const EARLIEST_FORMATTABLE: UnixSeconds = -62_167_219_200;
/// The last instant RFC 3339 can write, `9999-12-31T23:59:59Z`.
pub const LATEST_FORMATTABLE: UnixSeconds = 253_402_300_799;

const SECONDS_PER_DAY: i64 = 86_400;

/// Formats by hand (every answer formats a few timestamps, and the `time` crate's general
/// formatter was a visible share of a session listing). A time outside what RFC 3339 can
/// write is clamped to `EARLIEST_FORMATTABLE..=LATEST_FORMATTABLE`: a session that never
/// ends in practice (a lifetime of `u64::MAX` saturates at `i64::MAX`) shows, and its
/// token's `exp` says, `9999-12-31T23:59:59Z`, which is never later than the real end.
/// Earlier builds wrote `1970-01-01T00:00:00Z` for such times.
pub fn format_rfc3339(seconds: UnixSeconds) -> String {
    let mut buffer = [0u8; FOUR_DIGIT_YEAR_LENGTH];
    format_rfc3339_into(seconds, &mut buffer).into_owned()
}

/// Writes the timestamp, clamped as `format_rfc3339` does, into `buffer` and returns it as
/// text borrowed from it (answers write it straight into their JSON, with no `String`).
pub fn format_rfc3339_into(
    seconds: UnixSeconds,
    buffer: &mut [u8; FOUR_DIGIT_YEAR_LENGTH],
) -> Cow<'_, str> {
    let seconds = seconds.clamp(EARLIEST_FORMATTABLE, LATEST_FORMATTABLE);
    let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
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
        // The clamp keeps the year in 0..=9999, so `value` is in 0..100 and each digit
        // fits; the slots are inside the buffer.
        let digits = [value / 10 % 10, value % 10].map(|digit| b'0' + digit as u8);
        buffer[position..position + 2].copy_from_slice(&digits);
    }
    // Only ASCII digits and separators were written, so this borrows and replaces nothing.
    String::from_utf8_lossy(buffer)
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

    proptest::proptest! {
        #[test]
        fn a_time_rfc_3339_cannot_write_is_clamped(seconds in proptest::num::i64::ANY) {
            let clamped = seconds.clamp(EARLIEST_FORMATTABLE, LATEST_FORMATTABLE);
            proptest::prop_assert_eq!(format_rfc3339(seconds), format_rfc3339(clamped));
            proptest::prop_assert_eq!(format_rfc3339(seconds).len(), FOUR_DIGIT_YEAR_LENGTH);
        }
    }

    #[test]
    fn formats_the_edges_of_the_range() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-62_167_219_200), "0000-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(EARLIEST_FORMATTABLE), "0000-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(LATEST_FORMATTABLE), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn times_past_either_end_are_clamped_not_sent_to_1970() {
        for (seconds, expected) in [
            (i64::MAX, "9999-12-31T23:59:59Z"),
            (LATEST_FORMATTABLE + 1, "9999-12-31T23:59:59Z"),
            (i64::MIN, "0000-01-01T00:00:00Z"),
            (EARLIEST_FORMATTABLE - 1, "0000-01-01T00:00:00Z"),
        ] {
            assert_eq!(format_rfc3339(seconds), expected, "{seconds}");
            let mut buffer = [0u8; FOUR_DIGIT_YEAR_LENGTH];
            assert_eq!(format_rfc3339_into(seconds, &mut buffer), expected);
        }
        // The `time` crate refuses them too: there is no wider RFC 3339 to fall back on.
        for seconds in [LATEST_FORMATTABLE + 1, EARLIEST_FORMATTABLE - 1] {
            let formatted = OffsetDateTime::from_unix_timestamp(seconds)
                .ok()
                .and_then(|moment| moment.format(&Rfc3339).ok());
            assert_eq!(formatted, None);
        }
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
