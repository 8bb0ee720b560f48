use serde_json::{Value, json};
use stations_api::database::migrations::{self, MigrationStep};

use crate::helpers::spawn_app;

#[tokio::test]
async fn liveness_answers_200() {
    let app = spawn_app().await;
    let response = app.get("/health/live").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({ "status": "live" })
    );
}

#[tokio::test]
async fn readiness_answers_200_on_a_current_database() {
    let app = spawn_app().await;
    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({ "status": "ready" })
    );
}

#[tokio::test]
async fn readiness_answers_503_naming_a_pending_migration() {
    let app = spawn_app().await;
    migrations::run(&app.db, MigrationStep::Down(1))
        .await
        .unwrap();

    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    let reason = body["reason"].as_str().unwrap();
    let newest = crate::helpers::migration_names().pop().unwrap();
    assert!(
        reason.starts_with(&format!("1 pending migration(s): {newest}")),
        "{reason}"
    );
}

#[tokio::test]
async fn readiness_answers_503_when_the_database_is_ahead_of_the_binary() {
    let app = spawn_app().await;
    app.execute_sql(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m29990101_000001_from_the_future', 0)",
    )
    .await;

    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("m29990101_000001_from_the_future"),
        "{body}"
    );
}

#[tokio::test]
async fn readiness_answers_503_and_liveness_200_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.database.make_unreachable().await;

    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(app.get("/health/live").await.status(), 200);
}
