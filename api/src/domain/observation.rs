//! Observations as the API accepts them: each measurement within its plausible range, an instant
//! that is not in the future, and at least one measurement.

use chrono::{DateTime, Duration, Utc};

use super::{InvalidValue, within};

/// A measured quantity and the range a real instrument can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Air temperature: below the coldest (-89.2 °C) and above the hottest (56.7 °C) ever
    /// recorded.
    TemperatureC,
    /// Air pressure: a typhoon's eye at sea level (870 hPa) down to a station on a high summit.
    PressureHpa,
    HumidityPct,
    /// Precipitation since the station's previous observation.
    PrecipitationMm,
}

impl Measure {
    pub const ALL: [Self; 4] = [
        Self::TemperatureC,
        Self::PressureHpa,
        Self::HumidityPct,
        Self::PrecipitationMm,
    ];

    /// Its place in `Measure::ALL`, where arrays of one value per measure keep it.
    pub fn index(self) -> usize {
        match self {
            Self::TemperatureC => 0,
            Self::PressureHpa => 1,
            Self::HumidityPct => 2,
            Self::PrecipitationMm => 3,
        }
    }

    /// Its column in `observations` and in import files.
    pub fn column(self) -> &'static str {
        match self {
            Self::TemperatureC => "temperature_c",
            Self::PressureHpa => "pressure_hpa",
            Self::HumidityPct => "humidity_pct",
            Self::PrecipitationMm => "precipitation_mm",
        }
    }

    /// Its field in the GraphQL schema.
    pub fn graphql_name(self) -> &'static str {
        match self {
            Self::TemperatureC => "temperatureC",
            Self::PressureHpa => "pressureHpa",
            Self::HumidityPct => "humidityPct",
            Self::PrecipitationMm => "precipitationMm",
        }
    }

    /// The bounds the database's CHECK constraints enforce too.
    pub fn range(self) -> (f64, f64, &'static str) {
        match self {
            Self::TemperatureC => (-90.0, 60.0, " °C"),
            Self::PressureHpa => (300.0, 1100.0, " hPa"),
            Self::HumidityPct => (0.0, 100.0, " %"),
            Self::PrecipitationMm => (0.0, 2000.0, " mm"),
        }
    }

    pub fn parse(self, value: f64) -> Result<f64, InvalidValue> {
        let (min, max, unit) = self.range();
        within(value, min, max, unit)
    }
}

/// How far ahead of this server's clock an observation may be stamped: instruments' clocks
/// drift a little, but a reading from the future is a wrong clock or a wrong time zone.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// A valid observation, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewObservation {
    pub station_id: i32,
    pub observed_at: DateTime<Utc>,
    pub temperature_c: Option<f64>,
    pub pressure_hpa: Option<f64>,
    pub humidity_pct: Option<f64>,
    pub precipitation_mm: Option<f64>,
}

/// Checks the instant of an observation against `now`.
pub fn observed_at(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, InvalidValue> {
    if at > now + CLOCK_SKEW {
        return Err(InvalidValue(format!(
            "must not be in the future (got {}, the server's clock says {}): check the \
             instrument's clock and time zone",
            at.to_rfc3339(),
            now.to_rfc3339()
        )));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_measure_knows_its_place_in_all() {
        for (index, measure) in Measure::ALL.into_iter().enumerate() {
            assert_eq!(measure.index(), index, "{measure:?}");
        }
    }

    #[test]
    fn each_measure_refuses_what_no_instrument_reports() {
        assert!(Measure::TemperatureC.parse(-89.2).is_ok());
        assert!(Measure::TemperatureC.parse(61.0).is_err());
        assert!(Measure::PressureHpa.parse(f64::NAN).is_err());
        assert!(Measure::HumidityPct.parse(100.0).is_ok());
        assert!(Measure::PrecipitationMm.parse(-0.1).is_err());
        let message = Measure::PressureHpa.parse(12.0).unwrap_err().0;
        assert_eq!(message, "must be between 300 and 1100 hPa (got 12)");
    }

    #[test]
    fn an_observation_from_the_future_is_a_wrong_clock() {
        let now = Utc::now();
        assert!(observed_at(now + Duration::minutes(4), now).is_ok());
        assert!(observed_at(now + Duration::hours(2), now).is_err());
    }
}
