use async_graphql::{Context, Object, Result};
use chrono::Utc;
use sea_orm::DatabaseConnection;

use crate::auth::{Role, guard::RequireRole};
use crate::database::writes::Writer;
use crate::error::ApiError;
use crate::graphql::limits::Limits;
use crate::graphql::types::observation::{ObservationInput, RecordObservationsPayload};
use crate::service::observation::{self as service, RecordError};

#[derive(Default)]
pub struct ObservationMutation;

#[Object(guard = "RequireRole(Role::Writer)")]
impl ObservationMutation {
    /// Records observations, all of them or, if any is refused, none. Sending the same
    /// observation (station and instant) again stores nothing new: the payload counts it as a
    /// duplicate, so a client may safely retry a call whose answer it did not get.
    async fn record_observations(
        &self,
        ctx: &Context<'_>,
        inputs: Vec<ObservationInput>,
    ) -> Result<RecordObservationsPayload> {
        ctx.data::<Limits>()?
            .check_rows_per_mutation(inputs.len(), "observations")?;
        let now = Utc::now();
        let observations = inputs
            .into_iter()
            .enumerate()
            .map(|(index, input)| input.validate(&format!("inputs[{index}]"), now))
            .collect::<Result<Vec<_>, _>>()?;
        let writer = Writer::begin(ctx.data::<DatabaseConnection>()?)
            .await
            .map_err(ApiError::from)?;
        let recorded =
            service::record(&writer, &observations)
                .await
                .map_err(|error| match error {
                    RecordError::UnknownStation { index, station_id } => ApiError::bad_input(
                        format!("inputs[{index}].stationId"),
                        format!("names no station: no station has id {station_id}"),
                    ),
                    RecordError::Database(error) => ApiError::from(error),
                })?;
        writer.commit().await.map_err(ApiError::from)?;
        Ok(RecordObservationsPayload {
            inserted: recorded.inserted,
            duplicates: recorded.duplicates,
        })
    }
}
