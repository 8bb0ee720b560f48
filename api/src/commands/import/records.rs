//! One station as a file describes it, validated with the same rules as the API's inputs, and
//! encoded for PostgreSQL's `COPY ... FROM STDIN` text format.

use std::{borrow::Cow, fmt::Write as _};

use super::copy::CopyLine;
use crate::domain::{
    Elevation, InvalidValue, Latitude, Longitude, NewStation, StationCode, StationName,
};

/// A number field as read: absent or empty, a value, or why it is not a number.
pub type NumberField = Result<Option<f64>, String>;

/// The fields of one record, borrowed from the reader.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    pub code: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    pub lat: NumberField,
    pub lng: NumberField,
    pub elevation_m: NumberField,
}

/// Validates `fields`; the error names the field and what is allowed, as the API's do.
pub fn validate(fields: Fields<'_>) -> Result<NewStation, String> {
    fn named(field: &str) -> impl FnOnce(InvalidValue) -> String + '_ {
        move |InvalidValue(message)| format!("{field} {message}")
    }
    fn number(field: &str, value: NumberField) -> Result<Option<f64>, String> {
        value.map_err(|reason| format!("{field} {reason}"))
    }
    fn required(field: &str, value: NumberField) -> Result<f64, String> {
        number(field, value)?.ok_or_else(|| format!("{field} is missing"))
    }

    let code = fields
        .code
        .filter(|code| !code.is_empty())
        .ok_or("code is missing")?;
    let name = fields
        .name
        .filter(|name| !name.is_empty())
        .ok_or("name is missing")?;
    Ok(NewStation {
        code: StationCode::parse(code.into_owned()).map_err(named("code"))?,
        name: StationName::parse(name.into_owned()).map_err(named("name"))?,
        lat: Latitude::parse(required("lat", fields.lat)?).map_err(named("lat"))?,
        lng: Longitude::parse(required("lng", fields.lng)?).map_err(named("lng"))?,
        elevation_m: number("elevation_m", fields.elevation_m)?
            .map(Elevation::parse)
            .transpose()
            .map_err(named("elevation_m"))?,
    })
}

/// Parses a text field as a number: empty is absent.
pub fn number_from_text(text: &str) -> NumberField {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Some(value)),
        _ => Err(format!("is not a finite number (got {text:?})")),
    }
}

/// Appends `station` as one line of `COPY` text format: position, code, name, lat, lng,
/// elevation. Floats print their shortest exact form, so PostgreSQL stores the same value.
impl CopyLine for NewStation {
    fn encode(&self, position: u64, buffer: &mut String) {
        encode_copy_line(buffer, position, self);
    }
}

fn encode_copy_line(buffer: &mut String, position: u64, station: &NewStation) {
    let _ = write!(buffer, "{position}\t");
    escape_copy_text(buffer, station.code.as_str());
    buffer.push('\t');
    escape_copy_text(buffer, station.name.as_str());
    let _ = write!(
        buffer,
        "\t{:?}\t{:?}\t",
        station.lat.degrees(),
        station.lng.degrees()
    );
    match station.elevation_m {
        Some(elevation) => {
            let _ = write!(buffer, "{:?}", elevation.metres());
        }
        None => buffer.push_str("\\N"),
    }
    buffer.push('\n');
}

/// COPY text format gives backslash, tab, newline and carriage return a meaning.
fn escape_copy_text(buffer: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => buffer.push_str("\\\\"),
            '\t' => buffer.push_str("\\t"),
            '\n' => buffer.push_str("\\n"),
            '\r' => buffer.push_str("\\r"),
            other => buffer.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(
        code: &'a str,
        name: &'a str,
        lat: &str,
        lng: &str,
        elevation: &str,
    ) -> Fields<'a> {
        Fields {
            code: Some(code.into()),
            name: Some(name.into()),
            lat: number_from_text(lat),
            lng: number_from_text(lng),
            elevation_m: number_from_text(elevation),
        }
    }

    #[test]
    fn a_valid_record_encodes_as_one_copy_line() {
        let station = validate(fields("A1", "Back\\slash", "1.5", "-0.25", "")).unwrap();
        let mut line = String::new();
        encode_copy_line(&mut line, 7, &station);
        assert_eq!(line, "7\tA1\tBack\\\\slash\t1.5\t-0.25\t\\N\n");
    }

    #[test]
    fn each_bad_field_is_named() {
        for (record, error) in [
            (["", "x", "0", "0", ""], "code is missing"),
            (["A", "", "0", "0", ""], "name is missing"),
            (["A", "x", "", "0", ""], "lat is missing"),
            (
                ["A", "x", "north", "0", ""],
                "lat is not a finite number (got \"north\")",
            ),
            (
                ["A", "x", "0", "200", ""],
                "lng must be between -180 and 180 degrees (got 200)",
            ),
        ] {
            let [code, name, lat, lng, elevation] = record;
            assert_eq!(
                validate(fields(code, name, lat, lng, elevation)).unwrap_err(),
                error
            );
        }
        assert!(validate(fields("A", "x", "0", "0", "NaN")).is_err());
    }
}
