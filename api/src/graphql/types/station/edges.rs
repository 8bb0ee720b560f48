//! The `edges` of a stations page, answered in one pass.
//!
//! async-graphql resolves every field of every object as a future of its own and joins them:
//! for a page of 50 stations, hundreds of boxed futures and map inserts, which `perf` showed to
//! be a third of the server's time on list queries. Every field of an edge and of its station
//! is a plain value already in memory, so when the selection is only such fields (aliases
//! allowed; no fragments, directives or duplicate keys to merge), the answer is built directly.
//! Any other selection goes through async-graphql's own list resolution, which gives the same
//! answer; a test holds the two to that, with the schema's policies and directives present.
//! A value built in one pass never reaches per-field extension hooks: when the pipeline has
//! one (`pipeline::FieldHooks`), this steps aside. The schema does not change:
//! `edges` is `[StationEdge!]!`.

use std::{borrow::Cow, collections::HashSet};

use async_graphql::{
    ContextSelectionSet, Name, OutputType, Positioned, ScalarType, ServerResult, SimpleObject,
    Value,
    indexmap::IndexMap,
    parser::types::{Field, Selection, SelectionSet},
    registry::Registry,
    resolver_utils::resolve_list,
};

use super::Station;
use crate::graphql::pipeline::FieldHooks;

#[derive(SimpleObject)]
pub struct StationEdge {
    /// Pass as `after` to continue the list after this station.
    pub cursor: String,
    pub node: Station,
}

/// The edges of one page, as the `edges` field returns them.
pub struct StationEdges<'a>(pub &'a [StationEdge]);

/// What one key of an edge's answer holds.
enum EdgeField {
    Cursor,
    Node(Vec<(Name, StationField)>),
    Typename,
}

/// What one key of a station's answer holds.
#[derive(Clone, Copy)]
enum StationField {
    Id,
    Code,
    Name,
    Lat,
    Lng,
    ElevationM,
    CreatedAt,
    UpdatedAt,
    Typename,
}

impl OutputType for StationEdges<'_> {
    fn type_name() -> Cow<'static, str> {
        <Vec<StationEdge> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<StationEdge> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<StationEdge> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let field_hooks = ctx.data_opt::<FieldHooks>().is_none_or(|hooks| hooks.0);
        let plan = if field_hooks {
            None
        } else {
            edge_plan(&field.node.selection_set.node)
        };
        match plan {
            Some(plan) => Ok(Value::List(
                self.0.iter().map(|edge| edge_value(edge, &plan)).collect(),
            )),
            None => resolve_list(ctx, field, self.0, Some(self.0.len())).await,
        }
    }
}

/// The keys of an edge's answer and what each holds, when the selection is plain enough.
fn edge_plan(selection: &SelectionSet) -> Option<Vec<(Name, EdgeField)>> {
    plan(selection, |field| match field.name.node.as_str() {
        "cursor" => Some(EdgeField::Cursor),
        "node" => station_plan(&field.selection_set.node).map(EdgeField::Node),
        "__typename" => Some(EdgeField::Typename),
        _ => None,
    })
}

fn station_plan(selection: &SelectionSet) -> Option<Vec<(Name, StationField)>> {
    plan(selection, |field| {
        Some(match field.name.node.as_str() {
            "id" => StationField::Id,
            "code" => StationField::Code,
            "name" => StationField::Name,
            "lat" => StationField::Lat,
            "lng" => StationField::Lng,
            "elevationM" => StationField::ElevationM,
            "createdAt" => StationField::CreatedAt,
            "updatedAt" => StationField::UpdatedAt,
            "__typename" => StationField::Typename,
            _ => return None,
        })
    })
}

/// Each key of `selection` with what `kind` makes of its field; `None` as soon as one item is
/// not a plain field or `kind` does not know it.
fn plan<K>(selection: &SelectionSet, kind: impl Fn(&Field) -> Option<K>) -> Option<Vec<(Name, K)>> {
    let mut keys = HashSet::new();
    selection
        .items
        .iter()
        .map(|item| {
            let field = plain_field(item, &mut keys)?;
            Some((field.response_key().node.clone(), kind(field)?))
        })
        .collect()
}

/// A field selected without directives or arguments, under a key not seen before in the same
/// selection (a repeated key means selections to merge: left to async-graphql).
fn plain_field<'a>(
    item: &'a Positioned<Selection>,
    keys: &mut HashSet<&'a str>,
) -> Option<&'a Field> {
    let Selection::Field(field) = &item.node else {
        return None;
    };
    let field = &field.node;
    let plain = field.directives.is_empty()
        && field.arguments.is_empty()
        && keys.insert(field.response_key().node.as_str());
    plain.then_some(field)
}

fn edge_value(edge: &StationEdge, plan: &[(Name, EdgeField)]) -> Value {
    let mut object = IndexMap::with_capacity(plan.len());
    for (key, field) in plan {
        let value = match field {
            EdgeField::Cursor => Value::String(edge.cursor.clone()),
            EdgeField::Node(station_plan) => station_value(&edge.node, station_plan),
            EdgeField::Typename => Value::String(StationEdge::type_name().into_owned()),
        };
        object.insert(key.clone(), value);
    }
    Value::Object(object)
}

fn station_value(station: &Station, plan: &[(Name, StationField)]) -> Value {
    let mut object = IndexMap::with_capacity(plan.len());
    for (key, field) in plan {
        let value = match field {
            StationField::Id => Value::String(station.id.to_string()),
            StationField::Code => Value::String(station.code.clone()),
            StationField::Name => Value::String(station.name.clone()),
            StationField::Lat => station.lat.to_value(),
            StationField::Lng => station.lng.to_value(),
            StationField::ElevationM => station
                .elevation_m
                .as_ref()
                .map_or(Value::Null, ScalarType::to_value),
            StationField::CreatedAt => station.created_at.to_value(),
            StationField::UpdatedAt => station.updated_at.to_value(),
            StationField::Typename => Value::String(Station::type_name().into_owned()),
        };
        object.insert(key.clone(), value);
    }
    Value::Object(object)
}
