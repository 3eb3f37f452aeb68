//! RFC 3339 UTC time stamps for progress.txt and result.json.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-11-25T19:00:03Z` for a time (seconds precision, UTC).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Now, as [`rfc3339`].
pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// Milliseconds of a duration, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Seconds since the epoch (0 for times before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_seconds() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_633_203);
        assert_eq!(rfc3339(t), "2026-11-25T19:00:03Z");
    }
}
