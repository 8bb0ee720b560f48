//! GeoJSON: a FeatureCollection of Point features whose properties hold `code`, `name` and
//! optionally `elevation_m` (other properties are ignored). Features are parsed one at a time
//! from the stream, so a file of any size is read in constant memory; each comes with its
//! 1-based index and its JSON text verbatim.

use std::{
    borrow::Cow,
    fmt,
    fs::File,
    io::{BufReader, Read},
    path::Path,
};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, value::RawValue};

use super::EachRecord;
use super::records::{Fields, NumberField};

/// Hands every feature of the file at `path` to `each`: its index, its verbatim JSON, and its
/// fields (`Err` when the feature is not a station).
pub fn read(
    path: &Path,
    each: &mut EachRecord<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), String> {
    let file =
        File::open(path).map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    let mut reader = Counting {
        inner: BufReader::with_capacity(1 << 16, file),
        read: 0,
        progress,
    };
    let mut deserializer = serde_json::Deserializer::from_reader(&mut reader);
    let mut found_collection = false;
    FeatureCollection {
        each,
        found_collection: &mut found_collection,
    }
    .deserialize(&mut deserializer)
    .map_err(|error| format!("not a GeoJSON FeatureCollection: {error}"))?;
    if !found_collection {
        return Err("not a GeoJSON FeatureCollection: no \"features\" array".to_owned());
    }
    Ok(())
}

/// Reports how far into the file the parser is.
struct Counting<'p, R> {
    inner: R,
    read: u64,
    progress: &'p mut dyn FnMut(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.read += read as u64;
        (self.progress)(self.read);
        Ok(read)
    }
}

/// The top-level object: checks `type` and streams `features`.
struct FeatureCollection<'a, 'e, 'f> {
    each: &'a mut EachRecord<'e>,
    found_collection: &'f mut bool,
}

impl<'de> DeserializeSeed<'de> for FeatureCollection<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FeatureCollection<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a GeoJSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => {
                    let kind: String = map.next_value()?;
                    if kind != "FeatureCollection" {
                        return Err(de::Error::custom(format!(
                            "its type is {kind:?}, not \"FeatureCollection\""
                        )));
                    }
                }
                "features" => {
                    *self.found_collection = true;
                    map.next_value_seed(Features {
                        each: &mut *self.each,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct Features<'a, 'e> {
    each: &'a mut EachRecord<'e>,
}

impl<'de> DeserializeSeed<'de> for Features<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Features<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an array of features")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            index += 1;
            let parsed: Result<Value, _> = serde_json::from_str(raw.get());
            let keep_going = match &parsed {
                Ok(feature) => (self.each)(index, raw.get().as_bytes(), fields_of(feature)),
                Err(error) => (self.each)(index, raw.get().as_bytes(), Err(error.to_string())),
            };
            if !keep_going {
                // The rest is not read; skip it without holding it.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                break;
            }
        }
        Ok(())
    }
}

fn fields_of(feature: &Value) -> Result<Fields<'_>, String> {
    if feature.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err("is not a GeoJSON Feature".to_owned());
    }
    let geometry = feature.get("geometry").unwrap_or(&Value::Null);
    if geometry.get("type").and_then(Value::as_str) != Some("Point") {
        return Err("geometry must be a Point".to_owned());
    }
    let coordinates = geometry
        .get("coordinates")
        .and_then(Value::as_array)
        .filter(|coordinates| coordinates.len() >= 2)
        .ok_or("geometry.coordinates must be [lng, lat]")?;
    let properties = feature.get("properties").unwrap_or(&Value::Null);
    // Codes are often numbers in the wild (UIC station numbers): take them as their digits.
    let text = |name: &str| match properties.get(name) {
        Some(Value::String(text)) => Some(Cow::Borrowed(text.as_str())),
        Some(Value::Number(number)) => Some(Cow::Owned(number.to_string())),
        _ => None,
    };
    Ok(Fields {
        code: text("code"),
        name: text("name"),
        lng: number(&coordinates[0]),
        lat: number(&coordinates[1]),
        elevation_m: number(properties.get("elevation_m").unwrap_or(&Value::Null)),
    })
}

fn number(value: &Value) -> NumberField {
    match value {
        Value::Null => Ok(None),
        Value::Number(number) => number
            .as_f64()
            .filter(|value| value.is_finite())
            .map(Some)
            .ok_or_else(|| format!("is not a finite number (got {number})")),
        other => Err(format!("is not a number (got {other})")),
    }
}
