use super::{InvalidValue, Latitude, Longitude, within};

bounded_number!(
    /// Elevation above mean sea level in metres, from below the Challenger Deep (-10,935 m) to
    /// above Mount Everest (8,849 m).
    Elevation,
    -11_000.0,
    9_000.0,
    metres,
    " metres"
);

/// A station's display name: any Unicode text, stored byte for byte as given, that is not
/// blank and holds no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationName(String);

/// A short external identifier (an ICAO code, a UIC number, a network's own id), unique
/// across stations and used to match rows on import.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StationCode(String);

impl StationName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(name: String) -> Result<Self, InvalidValue> {
        if name.trim().is_empty() {
            return Err(InvalidValue("must not be empty or blank".to_owned()));
        }
        let length = name.chars().count();
        if length > Self::MAX_CHARS {
            return Err(InvalidValue(format!(
                "must be at most {} characters (got {length})",
                Self::MAX_CHARS
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidValue(
                "must not contain control characters such as newlines or NUL".to_owned(),
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl StationCode {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(code: String) -> Result<Self, InvalidValue> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
        if code.is_empty() || code.len() > Self::MAX_CHARS || !code.chars().all(allowed) {
            return Err(InvalidValue(format!(
                "must be 1 to {} characters from A-Z, a-z, 0-9 and - _ . : (got {code:?})",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Everything needed to create a station, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStation {
    pub code: StationCode,
    pub name: StationName,
    pub lat: Latitude,
    pub lng: Longitude,
    pub elevation_m: Option<Elevation>,
}

/// A partial update: `None` leaves a column as it is; for `elevation_m`, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StationChanges {
    pub code: Option<StationCode>,
    pub name: Option<StationName>,
    pub lat: Option<Latitude>,
    pub lng: Option<Longitude>,
    pub elevation_m: Option<Option<Elevation>>,
}

impl StationChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latitude_accepts_both_poles_and_rejects_beyond() {
        assert!(Latitude::parse(90.0).is_ok());
        assert!(Latitude::parse(-90.0).is_ok());
        let error = Latitude::parse(91.0).unwrap_err();
        assert_eq!(error.0, "must be between -90 and 90 degrees (got 91)");
    }

    #[test]
    fn coordinates_reject_nan_and_infinity() {
        assert!(Latitude::parse(f64::NAN).is_err());
        assert!(Longitude::parse(f64::INFINITY).is_err());
        assert!(Elevation::parse(f64::NEG_INFINITY).is_err());
    }

    #[test]
    fn a_blank_name_is_rejected_but_unicode_is_kept_byte_for_byte() {
        assert!(StationName::parse("   ".into()).is_err());
        let name = "Zürich HB 🚉 محطة e\u{301}".to_owned();
        assert_eq!(StationName::parse(name.clone()).unwrap().as_str(), name);
    }

    #[test]
    fn a_name_with_a_nul_byte_is_rejected() {
        assert!(StationName::parse("a\0b".into()).is_err());
    }

    #[test]
    fn codes_are_short_identifiers_without_spaces() {
        assert!(StationCode::parse("USW00094728".into()).is_ok());
        assert!(StationCode::parse("DE:8000105".into()).is_ok());
        assert!(StationCode::parse("".into()).is_err());
        assert!(StationCode::parse("has space".into()).is_err());
        assert!(StationCode::parse("x".repeat(33)).is_err());
    }

    #[test]
    fn an_update_without_fields_is_empty() {
        assert!(StationChanges::default().is_empty());
        let changes = StationChanges {
            elevation_m: Some(None),
            ..StationChanges::default()
        };
        assert!(!changes.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn coordinates_are_accepted_exactly_in_range(value in proptest::num::f64::ANY) {
            proptest::prop_assert_eq!(
                Latitude::parse(value).is_ok(),
                value.is_finite() && (-90.0..=90.0).contains(&value)
            );
            proptest::prop_assert_eq!(
                Longitude::parse(value).is_ok(),
                value.is_finite() && (-180.0..=180.0).contains(&value)
            );
        }

        #[test]
        fn a_printable_name_is_kept_exactly(name in "\\PC{1,200}") {
            match StationName::parse(name.clone()) {
                Ok(parsed) => proptest::prop_assert_eq!(parsed.as_str(), name.as_str()),
                Err(_) => proptest::prop_assert!(name.trim().is_empty()),
            }
        }

        #[test]
        fn arbitrary_text_never_panics_the_parsers(text in ".*") {
            let _ = StationName::parse(text.clone());
            let _ = StationCode::parse(text);
        }
    }
}
