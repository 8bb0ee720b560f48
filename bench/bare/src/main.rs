//! The practical limit of JSON over HTTP from PostgreSQL on a machine: a bare hyper +
//! tokio-postgres server answering the two requests `bench/run` measures it with
//! (`station(id)` and the first page of `stations`) with the JSON stations-api answers, from
//! the same SQL, with no GraphQL, no middleware and no logging.
//!
//! `bare-server PORT DATABASE_URL`: four connections (the API's default pool), each with the
//! two statements prepared, used in turn; tokio-postgres pipelines the queries of concurrent
//! requests on each.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::{Client, NoTls, Row, Statement};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What stations-api selects for a station (every column of the entity), as bench/run's
/// pgbench scripts do.
const COLUMNS: &str = r#""stations"."id", "stations"."code", "stations"."name", "stations"."lat", "stations"."lng", "stations"."elevation_m", "stations"."created_at", "stations"."updated_at""#;
const CONNECTIONS: usize = 4;

struct Connection {
    client: Client,
    by_id: Statement,
    first_page: Statement,
}

struct Database {
    connections: Vec<Connection>,
    next: AtomicUsize,
}

impl Database {
    fn connection(&self) -> &Connection {
        &self.connections[self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len()]
    }
}

#[derive(Deserialize)]
struct GraphqlRequest {
    query: String,
    #[serde(default)]
    variables: Option<Variables>,
}

#[derive(Deserialize)]
struct Variables {
    id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Station {
    id: String,
    code: String,
    name: String,
    lat: f64,
    lng: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    elevation_m: Option<Option<f64>>,
}

fn station(row: &Row, with_elevation: bool) -> Station {
    Station {
        id: row.get::<_, i32>(0).to_string(),
        code: row.get(1),
        name: row.get(2),
        lat: row.get(3),
        lng: row.get(4),
        elevation_m: with_elevation.then(|| row.get(5)),
    }
}

fn cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|ID|ASC|{id}|"))
}

async fn answer(database: &Database, body: &[u8]) -> Result<serde_json::Value, String> {
    let request: GraphqlRequest =
        serde_json::from_slice(body).map_err(|error| error.to_string())?;
    let connection = database.connection();
    if let Some(variables) = request.variables {
        let id: i32 = variables.id.parse().map_err(|_| "id".to_owned())?;
        let row = connection
            .client
            .query_opt(&connection.by_id, &[&id])
            .await
            .map_err(|error| error.to_string())?;
        return Ok(json!({ "data": { "station": row.map(|row| station(&row, true)) } }));
    }
    if !request.query.contains("stations(first: 50)") {
        return Err("only the two benchmark requests are known".to_owned());
    }
    let rows = connection
        .client
        .query(&connection.first_page, &[])
        .await
        .map_err(|error| error.to_string())?;
    let page: Vec<Station> = rows
        .iter()
        .take(50)
        .map(|row| station(row, false))
        .collect();
    let end_cursor = page.last().map(|station| cursor(&station.id));
    let edges: Vec<serde_json::Value> = page
        .into_iter()
        .map(|node| json!({ "cursor": cursor(&node.id), "node": node }))
        .collect();
    Ok(json!({ "data": { "stations": {
        "edges": edges,
        "pageInfo": { "hasNextPage": rows.len() > 50, "endCursor": end_cursor },
    } } }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(url)) = (args.next(), args.next()) else {
        return Err("usage: bare-server PORT DATABASE_URL".into());
    };
    let mut connections = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
        tokio::spawn(connection);
        let by_id = client
            .prepare(&format!(
                r#"SELECT {COLUMNS} FROM stations WHERE "stations"."id" = $1 LIMIT 1"#
            ))
            .await?;
        let first_page = client
            .prepare(&format!(
                r#"SELECT {COLUMNS} FROM stations ORDER BY "stations"."id" ASC LIMIT 51"#
            ))
            .await?;
        connections.push(Connection {
            client,
            by_id,
            first_page,
        });
    }
    let database = Arc::new(Database {
        connections,
        next: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let database = Arc::clone(&database);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let database = Arc::clone(&database);
                async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    let response = match answer(&database, &body).await {
                        Ok(value) => Response::builder()
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Full::new(Bytes::from(
                                serde_json::to_vec(&value).unwrap_or_default(),
                            ))),
                        Err(problem) => Response::builder()
                            .status(StatusCode::BAD_REQUEST)
                            .body(Full::new(Bytes::from(problem))),
                    };
                    Ok::<_, hyper::Error>(response.expect("a valid response"))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
