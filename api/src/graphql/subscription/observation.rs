use async_graphql::{Context, ID, Result, Subscription, futures_util::Stream};

use super::live_stream;
use crate::auth::{Role, guard::RequireRole};
use crate::graphql::types::live::{ObservationEvent, ObservationEventKind};
use crate::graphql::types::observation::Observation;
use crate::graphql::types::station::parse_station_id;
use crate::live::LiveEvent;

#[derive(Default)]
pub struct ObservationSubscription;

#[Subscription(guard = "RequireRole(Role::Reader)")]
impl ObservationSubscription {
    /// Every observation recorded once its transaction committed, of the stations given (all
    /// when left out); RESYNC when observations may have been missed.
    async fn observation_recorded(
        &self,
        ctx: &Context<'_>,
        station_ids: Option<Vec<ID>>,
    ) -> Result<impl Stream<Item = ObservationEvent> + use<>> {
        let stations = station_ids
            .map(|ids| {
                ids.iter()
                    .enumerate()
                    .map(|(index, id)| parse_station_id(id, &format!("stationIds[{index}]")))
                    .collect::<Result<Vec<i32>, _>>()
            })
            .transpose()?;
        let wanted = move |station: i32| stations.as_ref().is_none_or(|ids| ids.contains(&station));
        live_stream(ctx, move |event| match event {
            LiveEvent::Observations { rows } => rows
                .iter()
                .filter(|row| wanted(row.station_id))
                .map(|row| ObservationEvent {
                    kind: ObservationEventKind::Recorded,
                    observation: Some(Observation::from(row.clone())),
                })
                .collect(),
            LiveEvent::Resync {
                observations_of, ..
            } if observations_of
                .as_ref()
                .is_none_or(|changed| changed.iter().any(|station| wanted(*station))) =>
            {
                vec![ObservationEvent {
                    kind: ObservationEventKind::Resync,
                    observation: None,
                }]
            }
            _ => Vec::new(),
        })
    }
}
