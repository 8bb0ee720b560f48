//! The schema's evolution: each step reversible, the result matching the entities, and the
//! server refusing a database that is behind or ahead of it.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use secrecy::SecretString;
use stations_api::database::{migrations, schema_drift};
use stations_api::startup::{Application, StartupError};

use crate::helpers::{TestDatabase, migration_names, test_settings};

/// Everything a migration can change in the `public` schema, as sorted text lines.
async fn schema_snapshot(db: &DatabaseConnection) -> Vec<String> {
    let sql = "
        SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type
               || coalesce('(' || character_maximum_length || ')', '')
               || ' nullable=' || is_nullable || ' default=' || coalesce(column_default, '-')
        FROM information_schema.columns WHERE table_schema = 'public'
        UNION ALL
        SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL
        SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL
        SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'sequence ' || sequence_name FROM information_schema.sequences
        WHERE sequence_schema = 'public'
        UNION ALL
        SELECT 'extension ' || extname FROM pg_extension
        UNION ALL
        SELECT 'view ' || table_name || ' ' || view_definition FROM information_schema.views
        WHERE table_schema = 'public'
        ORDER BY 1";
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("read the schema")
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("a line"))
        .filter(|line| !line.contains("seaql_migrations"))
        .collect()
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> String {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .expect("a row")
        .try_get_by_index::<String>(0)
        .expect("a text value")
}

#[tokio::test]
async fn each_migration_is_undone_exactly_by_its_down_with_rows_present() {
    let database = TestDatabase::empty().await;
    let db = database.connect().await;
    let steps = Migrator::migrations().len();

    // Up one step at a time, remembering the schema after each.
    let mut snapshots = vec![schema_snapshot(&db).await];
    for step in 1..=steps {
        Migrator::up(&db, Some(1))
            .await
            .expect("migrate up one step");
        if step == 1 {
            db.execute_unprepared(
                "INSERT INTO stations (lat, lng) VALUES (47.37, 8.54), (-33.9, 151.2)",
            )
            .await
            .unwrap();
        }
        if migration_names()[step - 1].ends_with("create_observations") {
            db.execute_unprepared(
                "INSERT INTO observations (station_id, observed_at, temperature_c)
                 SELECT id, now(), 21.5 FROM stations",
            )
            .await
            .unwrap();
        }
        if migration_names()[step - 1].ends_with("create_observations_hourly") {
            // The observations stored before the rollup existed were counted into it.
            assert_eq!(
                scalar(&db, "SELECT sum(count)::text FROM observations_hourly").await,
                "2"
            );
        }
        snapshots.push(schema_snapshot(&db).await);
    }
    // Rows that predate the name and code columns got deterministic values.
    assert_eq!(
        scalar(
            &db,
            "SELECT string_agg(code || '=' || name, ',' ORDER BY id) FROM stations"
        )
        .await,
        "S1=Station 1,S2=Station 2"
    );

    // Down one step at a time: each step restores the schema before its up.
    for step in (1..=steps).rev() {
        Migrator::down(&db, Some(1))
            .await
            .expect("migrate down one step");
        assert_eq!(
            schema_snapshot(&db).await,
            snapshots[step - 1],
            "after undoing step {step}"
        );
        if step > 1 {
            assert_eq!(
                scalar(&db, "SELECT count(*)::text FROM stations").await,
                "2"
            );
        }
    }
    assert_eq!(
        migrations::state(&db).await.unwrap().applied,
        Vec::<String>::new()
    );

    // And up again, to the same schema as the first time.
    Migrator::up(&db, None).await.expect("migrate up again");
    assert_eq!(schema_snapshot(&db).await, snapshots[steps]);
}

#[tokio::test]
async fn the_migrated_schema_matches_the_entities() {
    let database = TestDatabase::migrated().await;
    let db = database.connect().await;
    let differences = schema_drift::differences(&db).await.unwrap();
    assert!(
        differences.is_empty(),
        "entities and migrations disagree:\n{}",
        differences
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn the_drift_check_reports_each_column_altered_by_hand() {
    let database = TestDatabase::migrated().await;
    let db = database.connect().await;
    db.execute_unprepared(
        "ALTER TABLE stations ALTER COLUMN elevation_m TYPE real,
                              ALTER COLUMN name DROP NOT NULL,
                              DROP CONSTRAINT stations_code_key,
                              ADD COLUMN notes text",
    )
    .await
    .unwrap();
    let differences: Vec<String> = schema_drift::differences(&db)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        differences,
        [
            "stations.code: the entity declares it unique, the table has no unique constraint on it",
            "stations.name: the entity declares it NOT NULL, the table has it NULL",
            "stations.elevation_m: the entity declares type double precision, the table has real",
            "stations.notes: the table has this text column, the entity does not declare it",
        ]
    );
}

#[tokio::test]
async fn the_drift_check_compares_foreign_keys_too() {
    let database = TestDatabase::migrated().await;
    let db = database.connect().await;
    db.execute_unprepared("ALTER TABLE observations DROP CONSTRAINT observations_station_id_fkey")
        .await
        .unwrap();
    let differences: Vec<String> = schema_drift::differences(&db)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        differences,
        [
            "observations.station_id: the entity declares a foreign key to stations.id, the table has none"
        ]
    );
}

#[tokio::test]
async fn the_server_refuses_to_start_with_pending_migrations_and_names_them() {
    let database = TestDatabase::migrated().await;
    let db = database.connect().await;
    migrations::run(&db, migrations::MigrationStep::Down(2))
        .await
        .unwrap();

    let mut settings = test_settings();
    settings.database.url = SecretString::from(database.url.clone());
    settings.database.migrate_on_start = false;
    let error = match Application::build(&settings).await {
        Err(error) => error,
        Ok(_) => panic!("the server started on an outdated schema"),
    };
    assert!(matches!(error, StartupError::Schema(_)));
    let message = error.to_string();
    assert!(
        message.contains("not up to date: 2 pending migration(s)"),
        "{message}"
    );
    let names = crate::helpers::migration_names();
    for name in &names[names.len() - 2..] {
        assert!(message.contains(name.as_str()), "{message}");
    }
    assert!(message.contains("stations-api migrate up"), "{message}");
}

#[tokio::test]
async fn the_server_applies_pending_migrations_when_allowed() {
    let database = TestDatabase::empty().await;
    let mut settings = test_settings();
    settings.database.url = SecretString::from(database.url.clone());
    settings.database.migrate_on_start = true;
    Application::build(&settings)
        .await
        .expect("the server starts");

    let db = database.connect().await;
    assert!(migrations::state(&db).await.unwrap().is_current());
}

#[tokio::test]
async fn the_server_refuses_a_database_ahead_of_it() {
    let database = TestDatabase::migrated().await;
    let db = database.connect().await;
    db.execute_unprepared(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m29990101_000001_newer', 0)",
    )
    .await
    .unwrap();

    let mut settings = test_settings();
    settings.database.url = SecretString::from(database.url.clone());
    settings.database.migrate_on_start = true;
    let message = match Application::build(&settings).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("the server started on a newer schema"),
    };
    assert!(message.contains("m29990101_000001_newer"), "{message}");
    assert!(message.contains("older than the schema"), "{message}");
}
