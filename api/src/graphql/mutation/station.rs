use async_graphql::{Context, ID, Object, Result};
use sea_orm::DatabaseConnection;

use crate::auth::{Role, guard::RequireRole};
use crate::database::writes::Writer;
use crate::error::ApiError;
use crate::graphql::limits::Limits;
use crate::graphql::types::station::{
    CreateStationInput, Station, UpdateStationInput, parse_station_id,
};
use crate::service::station::{self as service, WriteError};

#[derive(Default)]
pub struct StationMutation;

#[Object(guard = "RequireRole(Role::Writer)")]
impl StationMutation {
    /// Creates a station. Fails with CONFLICT when its code is taken.
    async fn create_station(
        &self,
        ctx: &Context<'_>,
        input: CreateStationInput,
    ) -> Result<Station> {
        let station = input.validate("input")?;
        let writer = Writer::begin(ctx.data::<DatabaseConnection>()?)
            .await
            .map_err(ApiError::from)?;
        let row = service::create(&writer, station)
            .await
            .map_err(|error| write_error(error, "input.code", None))?;
        writer.commit().await.map_err(ApiError::from)?;
        Ok(Station::from(row))
    }

    /// Creates every station given or, if any of them is refused, none.
    async fn create_stations(
        &self,
        ctx: &Context<'_>,
        inputs: Vec<CreateStationInput>,
    ) -> Result<Vec<Station>> {
        ctx.data::<Limits>()?
            .check_rows_per_mutation(inputs.len(), "stations")?;
        let mut stations = Vec::with_capacity(inputs.len());
        for (index, input) in inputs.into_iter().enumerate() {
            let station = input.validate(&format!("inputs[{index}]"))?;
            if let Some(earlier) = stations
                .iter()
                .position(|other: &crate::domain::NewStation| other.code == station.code)
            {
                return Err(ApiError::Conflict {
                    field: format!("inputs[{index}].code"),
                    message: format!(
                        "inputs[{index}].code repeats inputs[{earlier}].code {:?}",
                        station.code.as_str()
                    ),
                }
                .into());
            }
            stations.push(station);
        }
        let codes: Vec<String> = stations
            .iter()
            .map(|s| s.code.as_str().to_owned())
            .collect();
        let writer = Writer::begin(ctx.data::<DatabaseConnection>()?)
            .await
            .map_err(ApiError::from)?;
        let rows = service::create_many(&writer, stations)
            .await
            .map_err(|error| {
                let index = match &error {
                    WriteError::DuplicateCode(code) => codes.iter().position(|c| c == code),
                    _ => None,
                };
                let field =
                    index.map_or_else(|| "inputs".to_owned(), |i| format!("inputs[{i}].code"));
                write_error(error, &field, None)
            })?;
        writer.commit().await.map_err(ApiError::from)?;
        Ok(rows.into_iter().map(Station::from).collect())
    }

    /// Changes the fields given and leaves the others as they are.
    async fn update_station(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateStationInput,
    ) -> Result<Station> {
        let station_id = parse_station_id(&id, "id")?;
        let changes = input.validate("input")?;
        let writer = Writer::begin(ctx.data::<DatabaseConnection>()?)
            .await
            .map_err(ApiError::from)?;
        let row = service::update(&writer, station_id, changes)
            .await
            .map_err(|error| write_error(error, "input.code", Some(&id)))?;
        writer.commit().await.map_err(ApiError::from)?;
        Ok(Station::from(row))
    }

    /// Deletes a station and returns its id. A station with observations is refused with
    /// CONFLICT, which says how many it has, unless `cascade` is true: then they are deleted
    /// with it.
    async fn delete_station(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(desc = "Delete the station's observations with it. Default: false.")]
        cascade: Option<bool>,
    ) -> Result<ID> {
        let station_id = parse_station_id(&id, "id")?;
        let writer = Writer::begin(ctx.data::<DatabaseConnection>()?)
            .await
            .map_err(ApiError::from)?;
        service::delete(&writer, station_id, cascade.unwrap_or(false))
            .await
            .map_err(|error| write_error(error, "id", Some(&id)))?;
        writer.commit().await.map_err(ApiError::from)?;
        Ok(id)
    }
}

/// What a refused write looks like to the client; `code_field` names the input field holding
/// the code, `id` the station the write was aimed at.
fn write_error(error: WriteError, code_field: &str, id: Option<&ID>) -> ApiError {
    match error {
        WriteError::DuplicateCode(code) => ApiError::Conflict {
            field: code_field.to_owned(),
            message: format!("a station with code {code:?} already exists"),
        },
        WriteError::NotFound => ApiError::NotFound {
            id: id.map(|id| id.to_string()).unwrap_or_default(),
        },
        WriteError::HasObservations(count) => ApiError::Conflict {
            field: "cascade".to_owned(),
            message: format!(
                "station {} has {count} observation(s) and deleting it would delete them too: \
                 call deleteStation with cascade: true to delete both",
                id.map(|id| id.to_string()).unwrap_or_default()
            ),
        },
        WriteError::Database(error) => ApiError::from(error),
    }
}
