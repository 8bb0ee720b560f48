//! Opaque cursors: a keyset position and the ordering it belongs to, in URL-safe base64.
//!
//! Clients must treat cursors as opaque (Relay connection spec); the ordering inside lets the
//! server refuse a cursor reused with a different `orderBy`, which would silently skip rows.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::DateTime;

use crate::error::ApiError;
use crate::service::observation::{ObservationPosition, TimeOrder};
use crate::service::station::{KeysetPosition, SortDirection, SortField, SortKey, StationOrdering};

const VERSION: &str = "v1";
/// Observation cursors carry a version of their own, so that one is never mistaken for the
/// other's.
const OBSERVATION_VERSION: &str = "o1";

/// The cursor of an observation in a list running in `order`.
pub fn encode_observation(position: ObservationPosition, order: TimeOrder) -> String {
    let text = format!(
        "{OBSERVATION_VERSION}|{}|{}|{}",
        order_name(order),
        position.id,
        position.observed_at.timestamp_micros()
    );
    URL_SAFE_NO_PAD.encode(text)
}

/// Reads a cursor given as `after` to a list of observations running in `order`.
pub fn decode_observation(cursor: &str, order: TimeOrder) -> Result<ObservationPosition, ApiError> {
    let malformed = || not_a_cursor("observations");
    let [cursor_order, id, micros] = fields(cursor, OBSERVATION_VERSION, malformed)?;
    if cursor_order != order_name(order) {
        return Err(ApiError::bad_input(
            FIELD,
            format!(
                "belongs to a list ordered {cursor_order}, not {}: pass the same order as for the \
                 page it came from, or leave {FIELD} out to start over",
                order_name(order)
            ),
        ));
    }
    Ok(ObservationPosition {
        id: id.parse().map_err(|_| malformed())?,
        observed_at: micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(malformed)?,
    })
}

/// The argument that takes a cursor: every list pages forward only.
const FIELD: &str = "after";

/// The refusal of a cursor that this API did not write for a list of `rows`.
fn not_a_cursor(rows: &str) -> ApiError {
    ApiError::bad_input(
        FIELD,
        format!(
            "is not a cursor returned by this API for a list of {rows}: pass an edge's cursor or \
             pageInfo.endCursor unchanged"
        ),
    )
}

/// The `N` fields of a cursor of `version`, the last one free to hold `|`; or `malformed()`.
fn fields<const N: usize>(
    cursor: &str,
    version: &str,
    malformed: impl Fn() -> ApiError,
) -> Result<[String; N], ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| malformed())?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    let mut parts = text.splitn(N + 1, '|');
    if parts.next() != Some(version) {
        return Err(malformed());
    }
    let fields: Vec<String> = parts.map(str::to_owned).collect();
    fields.try_into().map_err(|_| malformed())
}

fn order_name(order: TimeOrder) -> &'static str {
    match order {
        TimeOrder::NewestFirst => "NEWEST_FIRST",
        TimeOrder::OldestFirst => "OLDEST_FIRST",
    }
}

pub fn encode(position: &KeysetPosition, ordering: StationOrdering) -> String {
    let key = match &position.key {
        SortKey::Id => String::new(),
        SortKey::Name(name) => name.clone(),
        SortKey::Code(code) => code.clone(),
        SortKey::CreatedAt(at) => at.timestamp_micros().to_string(),
    };
    let text = format!(
        "{VERSION}|{}|{}|{}|{key}",
        field_name(ordering.field),
        direction_name(ordering.direction),
        position.id
    );
    URL_SAFE_NO_PAD.encode(text)
}

/// Reads a cursor given as `after` to a list of stations ordered by `ordering`.
pub fn decode(cursor: &str, ordering: StationOrdering) -> Result<KeysetPosition, ApiError> {
    let malformed = || not_a_cursor("stations");
    let [sort_field, direction, id, key] = fields(cursor, VERSION, malformed)?;
    if sort_field != field_name(ordering.field) || direction != direction_name(ordering.direction) {
        return Err(ApiError::bad_input(
            FIELD,
            format!(
                "belongs to a list ordered by {sort_field} {direction}, not by {} {}: pass the \
                 same orderBy as for the page it came from, or leave {FIELD} out to start over",
                field_name(ordering.field),
                direction_name(ordering.direction)
            ),
        ));
    }
    let id = id.parse::<i32>().map_err(|_| malformed())?;
    let key = match ordering.field {
        SortField::Id if key.is_empty() => SortKey::Id,
        SortField::Id => return Err(malformed()),
        SortField::Name => SortKey::Name(key),
        SortField::Code => SortKey::Code(key),
        SortField::CreatedAt => key
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .map(SortKey::CreatedAt)
            .ok_or_else(malformed)?,
    };
    Ok(KeysetPosition { key, id })
}

fn field_name(field: SortField) -> &'static str {
    match field {
        SortField::Id => "ID",
        SortField::Name => "NAME",
        SortField::Code => "CODE",
        SortField::CreatedAt => "CREATED_AT",
    }
}

fn direction_name(direction: SortDirection) -> &'static str {
    match direction {
        SortDirection::Asc => "ASC",
        SortDirection::Desc => "DESC",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordering(field: SortField, direction: SortDirection) -> StationOrdering {
        StationOrdering { field, direction }
    }

    #[test]
    fn a_cursor_decodes_to_the_position_it_encodes() {
        let by_name = ordering(SortField::Name, SortDirection::Desc);
        let position = KeysetPosition {
            key: SortKey::Name("Gare | du Nord".to_owned()),
            id: 7,
        };
        let cursor = encode(&position, by_name);
        assert_eq!(decode(&cursor, by_name).unwrap(), position);
    }

    #[test]
    fn a_creation_time_survives_to_the_microsecond() {
        let by_time = ordering(SortField::CreatedAt, SortDirection::Asc);
        let at = DateTime::from_timestamp_micros(1_764_063_000_123_456).unwrap();
        let position = KeysetPosition {
            key: SortKey::CreatedAt(at),
            id: 1,
        };
        assert_eq!(
            decode(&encode(&position, by_time), by_time).unwrap(),
            position
        );
    }

    #[test]
    fn a_cursor_from_another_ordering_is_refused_by_name() {
        let position = KeysetPosition {
            key: SortKey::Id,
            id: 3,
        };
        let cursor = encode(&position, StationOrdering::default());
        let error = decode(&cursor, ordering(SortField::Name, SortDirection::Asc))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("ordered by ID ASC, not by NAME ASC"),
            "{error}"
        );
    }

    #[test]
    fn garbage_is_not_a_cursor() {
        for garbage in [
            "",
            "not base64!",
            "djE",
            &URL_SAFE_NO_PAD.encode("v1|ID|ASC|x|"),
        ] {
            let error = decode(garbage, StationOrdering::default()).unwrap_err();
            assert!(
                error.to_string().starts_with("after is not a cursor"),
                "{garbage}"
            );
        }
    }

    #[test]
    fn an_observation_cursor_round_trips_and_is_no_station_cursor() {
        let position = ObservationPosition {
            observed_at: DateTime::from_timestamp_micros(1_764_063_000_123_456).unwrap(),
            id: 9_000_000_001,
        };
        let cursor = encode_observation(position, TimeOrder::OldestFirst);
        assert_eq!(
            decode_observation(&cursor, TimeOrder::OldestFirst).unwrap(),
            position
        );
        let other_order = decode_observation(&cursor, TimeOrder::NewestFirst)
            .unwrap_err()
            .to_string();
        assert!(
            other_order.contains("ordered OLDEST_FIRST, not NEWEST_FIRST"),
            "{other_order}"
        );
        let station_cursor = encode(
            &KeysetPosition {
                key: SortKey::Id,
                id: 3,
            },
            StationOrdering::default(),
        );
        assert!(decode_observation(&station_cursor, TimeOrder::NewestFirst).is_err());
        assert!(decode(&cursor, StationOrdering::default()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_text_never_panics(text in ".*") {
            let _ = decode(&text, StationOrdering::default());
            let _ = decode_observation(&text, TimeOrder::NewestFirst);
        }

        #[test]
        fn decoding_arbitrary_bytes_in_base64_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)
        ) {
            let cursor = URL_SAFE_NO_PAD.encode(bytes);
            for field in [SortField::Id, SortField::Name, SortField::CreatedAt] {
                let _ = decode(&cursor, ordering(field, SortDirection::Asc));
            }
        }

        #[test]
        fn every_name_position_round_trips(
            name in ".{0,80}",
            id in proptest::prelude::any::<i32>(),
            descending in proptest::prelude::any::<bool>(),
        ) {
            let direction = if descending { SortDirection::Desc } else { SortDirection::Asc };
            let by_name = ordering(SortField::Name, direction);
            let position = KeysetPosition { key: SortKey::Name(name), id };
            proptest::prop_assert_eq!(decode(&encode(&position, by_name), by_name).unwrap(), position);
        }

        #[test]
        fn every_creation_time_round_trips(
            micros in -62_135_596_800_000_000i64..253_402_300_799_000_000i64,
            id in proptest::prelude::any::<i32>(),
        ) {
            let by_time = ordering(SortField::CreatedAt, SortDirection::Asc);
            let at = DateTime::from_timestamp_micros(micros).unwrap();
            let position = KeysetPosition { key: SortKey::CreatedAt(at), id };
            proptest::prop_assert_eq!(decode(&encode(&position, by_time), by_time).unwrap(), position);
        }
    }
}
