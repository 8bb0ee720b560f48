//! `stations-api import` and `export`, as users run them, against a real database.

use std::path::{Path, PathBuf};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::helpers::{TestDatabase, run, stations_api};

/// A file of the test's own under target/tmp, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn with(name: &str, contents: &[u8]) -> Self {
        let path = Self::path(name);
        std::fs::write(&path, contents).expect("write the test file");
        Self(path)
    }

    fn path(name: &str) -> PathBuf {
        let directory = Path::new(env!("CARGO_TARGET_TMPDIR")).join("import-tests");
        std::fs::create_dir_all(&directory).expect("create the test folder");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or_default();
        directory.join(format!("{}-{nanos}-{name}", std::process::id()))
    }

    fn empty(name: &str) -> Self {
        Self(Self::path(name))
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.0).expect("read the test file")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the binary against `database`: exit code, standard output, standard error.
fn cli(database: &TestDatabase, args: &[&str]) -> (i32, String, String) {
    let (output, stdout, stderr) = run(stations_api(args).env("DATABASE_URL", &database.url));
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

fn path(file: &TempFile) -> &str {
    file.0.to_str().expect("a UTF-8 path")
}

/// Every station as (code, name, lat, lng, elevation_m), ordered by code.
async fn stations(db: &DatabaseConnection) -> Vec<(String, String, f64, f64, Option<f64>)> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT code, name, lat, lng, elevation_m FROM stations ORDER BY code",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| {
        (
            row.try_get("", "code").unwrap(),
            row.try_get("", "name").unwrap(),
            row.try_get("", "lat").unwrap(),
            row.try_get("", "lng").unwrap(),
            row.try_get("", "elevation_m").unwrap(),
        )
    })
    .collect()
}

const GOOD_CSV: &str = "code,name,lat,lng,elevation_m
ZRH,Zürich HB,47.3779,8.5403,408
\"GDN\",\"Gare du Nord, Paris\",48.8809,2.3553,
SUV,\"Suva \"\"Fiji\"\"\",-18.1416,178.4419,3.5
";

#[tokio::test]
async fn a_csv_file_loads_every_station_with_its_values() {
    let database = TestDatabase::migrated().await;
    let file = TempFile::with("good.csv", GOOD_CSV.as_bytes());
    let (code, stdout, stderr) = cli(&database, &["import", path(&file)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("inserted 3, updated 0, skipped 0, rejected 0 in "),
        "{stdout}"
    );
    let db = database.connect().await;
    assert_eq!(
        stations(&db).await,
        [
            (
                "GDN".into(),
                "Gare du Nord, Paris".into(),
                48.8809,
                2.3553,
                None
            ),
            (
                "SUV".into(),
                "Suva \"Fiji\"".into(),
                -18.1416,
                178.4419,
                Some(3.5)
            ),
            (
                "ZRH".into(),
                "Zürich HB".into(),
                47.3779,
                8.5403,
                Some(408.0)
            ),
        ]
    );
}

const BAD_CSV: &str = "code,name,lat,lng,elevation_m
OK1,Fine,1,1,
NONAME,,1,1,
FAR,\"Too, far north\",91,0,
NAN,Not a number,north,0,
SHORT,Too few fields,1
OK1,Repeated code,2,2,
,No code,3,3,
OK2,Also fine,4,4,12
";

#[tokio::test]
async fn bad_rows_refuse_the_whole_file_each_named_by_line() {
    let database = TestDatabase::migrated().await;
    let file = TempFile::with("bad.csv", BAD_CSV.as_bytes());
    let (code, _, stderr) = cli(&database, &["import", path(&file)]);
    assert_eq!(code, 1);
    for reason in [
        "the file has 6 bad row(s), so nothing was imported",
        "--reject-file",
        "line 3: name is missing",
        "line 4: lat must be between -90 and 90 degrees (got 91)",
        "line 5: lat is not a finite number (got \"north\")",
        "line 6: has 3 fields where the header has 5",
        "line 7: code \"OK1\" repeats the one at line 2",
        "line 8: code is missing",
    ] {
        assert!(stderr.contains(reason), "expected {reason:?} in:\n{stderr}");
    }
    assert!(stations(&database.connect().await).await.is_empty());
}

#[tokio::test]
async fn with_a_reject_file_the_valid_rows_load_and_the_bad_ones_are_set_aside_verbatim() {
    let database = TestDatabase::migrated().await;
    let file = TempFile::with("bad.csv", BAD_CSV.as_bytes());
    let rejects = TempFile::empty("rejects.csv");
    let (code, stdout, stderr) = cli(
        &database,
        &["import", path(&file), "--reject-file", path(&rejects)],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("inserted 2, updated 0, skipped 0, rejected 6 in "),
        "{stdout}"
    );
    assert_eq!(
        rejects.text(),
        "code,name,lat,lng,elevation_m
NONAME,,1,1,
FAR,\"Too, far north\",91,0,
NAN,Not a number,north,0,
SHORT,Too few fields,1
,No code,3,3,
OK1,Repeated code,2,2,
"
    );
    let codes: Vec<String> = stations(&database.connect().await)
        .await
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(codes, ["OK1", "OK2"]);

    // The corrected reject file imports like any other.
    std::fs::write(
        &rejects.0,
        "code,name,lat,lng,elevation_m\nNONAME,Named now,1,1,\n",
    )
    .unwrap();
    let (code, stdout, _) = cli(&database, &["import", path(&rejects)]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("inserted 1,"), "{stdout}");
}

#[tokio::test]
async fn unknown_or_missing_columns_are_named() {
    let database = TestDatabase::migrated().await;
    let extra = TempFile::with(
        "extra.csv",
        b"code,name,lat,lng,altitude,notes\nA,a,1,1,2,x\n",
    );
    let (code, _, stderr) = cli(&database, &["import", path(&extra)]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "unknown column(s) altitude, notes: the header must be code,name,lat,lng,elevation_m"
        ),
        "{stderr}"
    );

    let missing = TempFile::with("missing.csv", b"code,lat,lng\nA,1,1\n");
    let (code, _, stderr) = cli(&database, &["import", path(&missing)]);
    assert_eq!(code, 1);
    assert!(stderr.contains("missing column(s) name"), "{stderr}");

    let unknown = TempFile::with("stations.txt", GOOD_CSV.as_bytes());
    let (code, _, stderr) = cli(&database, &["import", path(&unknown)]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("pass --format csv or --format geojson"),
        "{stderr}"
    );
    let (code, _, stderr) = cli(&database, &["import", path(&unknown), "--format", "csv"]);
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn on_conflict_updates_skips_or_refuses_existing_codes() {
    let database = TestDatabase::migrated().await;
    let db = database.connect().await;
    let first = TempFile::with(
        "first.csv",
        b"code,name,lat,lng,elevation_m\nA,Old A,1,1,\nB,Old B,2,2,\n",
    );
    assert_eq!(cli(&database, &["import", path(&first)]).0, 0);

    let second = TempFile::with(
        "second.csv",
        b"code,name,lat,lng,elevation_m\nA,New A,1,1,\nB,Old B,2,2,\nC,New C,3,3,\n",
    );

    let (code, stdout, stderr) = cli(
        &database,
        &["import", path(&second), "--on-conflict", "fail"],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("2 station(s) in the file have a code that is already taken"),
        "{stderr}"
    );
    assert!(stderr.contains("line 2: code \"A\" exists"), "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(stations(&db).await.len(), 2, "fail changes nothing");

    let (code, stdout, _) = cli(
        &database,
        &["import", path(&second), "--on-conflict", "skip"],
    );
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("inserted 1, updated 0, skipped 2, rejected 0"),
        "{stdout}"
    );
    assert_eq!(stations(&db).await[0].1, "Old A");

    let (code, stdout, _) = cli(&database, &["import", path(&second)]);
    assert_eq!(code, 0);
    // B is unchanged, so it is not rewritten.
    assert!(
        stdout.starts_with("inserted 0, updated 1, skipped 2, rejected 0"),
        "{stdout}"
    );
    assert_eq!(stations(&db).await[0].1, "New A");
}

#[tokio::test]
async fn a_row_the_database_refuses_rolls_back_the_whole_import() {
    let database = TestDatabase::migrated().await;
    let db = database.connect().await;
    let first = TempFile::with("first.csv", b"code,name,lat,lng,elevation_m\nA,Kept,1,1,\n");
    assert_eq!(cli(&database, &["import", path(&first)]).0, 0);
    // A rule of this database only, which the file's last row breaks.
    db.execute_unprepared("ALTER TABLE stations ADD CONSTRAINT no_zed CHECK (name <> 'Zed')")
        .await
        .unwrap();

    let file = TempFile::with(
        "zed.csv",
        b"code,name,lat,lng,elevation_m\nA,Changed,1,1,\nB,New,2,2,\nZ,Zed,3,3,\n",
    );
    let (code, stdout, stderr) = cli(&database, &["import", path(&file)]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert_eq!(
        stations(&db).await,
        [("A".to_owned(), "Kept".to_owned(), 1.0, 1.0, None)]
    );
}

#[tokio::test]
async fn geojson_points_load_with_their_properties() {
    let database = TestDatabase::migrated().await;
    let file = TempFile::with(
        "stations.geojson",
        r#"{"type": "FeatureCollection", "name": "trains", "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [8.5403, 47.3779]},
             "properties": {"code": "ZRH", "name": "Zürich HB", "elevation_m": 408, "operator": "SBB"}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.3694, 52.5251]},
             "properties": {"code": 8011160, "name": "Berlin Hbf", "elevation_m": null}},
            {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
             "properties": {"code": "L", "name": "A line"}}
        ]}"#
        .as_bytes(),
    );
    let rejects = TempFile::empty("rejects.geojson");
    let (code, stdout, stderr) = cli(
        &database,
        &["import", path(&file), "--reject-file", path(&rejects)],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("inserted 2, updated 0, skipped 0, rejected 1"),
        "{stdout}"
    );
    let rejected: serde_json::Value = serde_json::from_str(&rejects.text()).unwrap();
    assert_eq!(rejected["features"][0]["properties"]["code"], "L");
    let loaded = stations(&database.connect().await).await;
    assert_eq!(
        loaded[0],
        (
            "8011160".into(),
            "Berlin Hbf".into(),
            52.5251,
            13.3694,
            None
        )
    );

    let (code, _, stderr) = cli(&database, &["import", path(&file)]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("feature 3: geometry must be a Point"),
        "{stderr}"
    );

    let not_geojson = TempFile::with("array.json", b"[1, 2, 3]");
    let (code, _, stderr) = cli(&database, &["import", path(&not_geojson)]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("not a GeoJSON FeatureCollection"),
        "{stderr}"
    );
}

#[tokio::test]
async fn import_export_import_gives_the_same_stations_in_both_formats() {
    let source = TestDatabase::migrated().await;
    let (code, _, stderr) = cli(&source, &["import", "--demo", "500"]);
    assert_eq!(code, 0, "{stderr}");
    let tricky = TempFile::with(
        "tricky.csv",
        "code,name,lat,lng,elevation_m\nQ1,\"Comma, \"\"quote\"\" and back\\\\slash\",-89.999999,-180,-10.25\nQ2,مرکز 🚉 e\u{301},0.1,179.999999,\n".as_bytes(),
    );
    assert_eq!(cli(&source, &["import", path(&tricky)]).0, 0);
    let original = stations(&source.connect().await).await;
    assert_eq!(original.len(), 502);

    for extension in ["csv", "geojson"] {
        let exported = TempFile::empty(&format!("export.{extension}"));
        let (code, _, stderr) = cli(&source, &["export", path(&exported)]);
        assert_eq!(code, 0, "{stderr}");

        let copy = TestDatabase::migrated().await;
        let (code, stdout, stderr) = cli(&copy, &["import", path(&exported)]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.starts_with("inserted 502,"), "{stdout}");
        assert_eq!(
            stations(&copy.connect().await).await,
            original,
            "through {extension}"
        );

        // And the copy exports byte for byte what the source did.
        let again = TempFile::empty(&format!("again.{extension}"));
        assert_eq!(cli(&copy, &["export", path(&again)]).0, 0);
        assert_eq!(again.text(), exported.text(), "{extension}");
    }

    // Standard output works too.
    let (code, stdout, _) = cli(&source, &["export", "--format", "csv"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 503);
}

#[tokio::test]
async fn the_demo_stations_are_the_same_every_time() {
    let first = TestDatabase::migrated().await;
    let second = TestDatabase::migrated().await;
    for database in [&first, &second] {
        let (code, stdout, stderr) = cli(database, &["import", "--demo", "200"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.starts_with("inserted 200,"), "{stdout}");
    }
    let (one, two) = (
        stations(&first.connect().await).await,
        stations(&second.connect().await).await,
    );
    assert_eq!(one, two);
    assert_eq!(one[0].0, "DEMO0000001");
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

const OBSERVATIONS_CSV: &str = "station_code,observed_at,temperature_c,humidity_pct
ZRH,2026-06-01T12:00:00Z,21.5,40
ZRH,2026-06-01T13:00:00+02:00,22.0,
SUV,2026-06-01T12:00:00Z,,88
";

#[tokio::test]
async fn observations_import_by_station_code_and_a_second_import_only_counts_duplicates() {
    let database = TestDatabase::migrated().await;
    let stations = TempFile::with("stations.csv", GOOD_CSV.as_bytes());
    assert_eq!(cli(&database, &["import", path(&stations)]).0, 0);
    let file = TempFile::with("observations.csv", OBSERVATIONS_CSV.as_bytes());

    let (code, stdout, stderr) = cli(&database, &["import", "observations", path(&file)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("inserted 3, duplicates 0, rejected 0"),
        "{stdout}"
    );
    let (code, stdout, _) = cli(&database, &["import", "observations", path(&file)]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("inserted 0, duplicates 3, rejected 0"),
        "{stdout}"
    );

    let db = database.connect().await;
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM observations o JOIN stations s ON s.id = o.station_id
             WHERE s.code = 'ZRH' AND o.humidity_pct IS NULL
               AND o.observed_at = '2026-06-01T11:00:00Z'"
        )
        .await,
        1,
        "the offset is honoured and an empty field is NULL"
    );
}

#[tokio::test]
async fn bad_observation_rows_refuse_the_file_or_go_to_the_reject_file_verbatim() {
    let database = TestDatabase::migrated().await;
    let stations = TempFile::with("stations.csv", GOOD_CSV.as_bytes());
    assert_eq!(cli(&database, &["import", path(&stations)]).0, 0);
    let csv = "observed_at,station_code,temperature_c
2026-06-01T12:00:00Z,ZRH,20
2026-06-01T13:00:00Z,ZRH,99
2026-06-01 14:00,ZRH,20
2026-06-01T15:00:00Z,NOPE,20
2026-06-01T16:00:00Z,ZRH,
2999-01-01T00:00:00Z,ZRH,20
2026-06-01T17:00:00Z,SUV,25
";
    let file = TempFile::with("bad-observations.csv", csv.as_bytes());
    let (code, _, stderr) = cli(&database, &["import", "observations", path(&file)]);
    assert_ne!(code, 0);
    for expected in [
        "5 bad row(s), so nothing was imported",
        "line 3: temperature_c must be between -90 and 60",
        "line 4: observed_at is not an RFC 3339 instant",
        "line 5: station_code \"NOPE\" names no station",
        "line 6: has no measurement",
        "line 7: observed_at must not be in the future",
    ] {
        assert!(stderr.contains(expected), "{expected} in:\n{stderr}");
    }
    let db = database.connect().await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM observations").await, 0);

    let rejects = TempFile::empty("rejected-observations.csv");
    let (code, stdout, stderr) = cli(
        &database,
        &[
            "import",
            "observations",
            path(&file),
            "--reject-file",
            path(&rejects),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("inserted 2, duplicates 0, rejected 5"),
        "{stdout}"
    );
    assert_eq!(
        rejects.text(),
        "observed_at,station_code,temperature_c
2026-06-01T13:00:00Z,ZRH,99
2026-06-01 14:00,ZRH,20
2026-06-01T16:00:00Z,ZRH,
2999-01-01T00:00:00Z,ZRH,20
2026-06-01T15:00:00Z,NOPE,20
"
    );
}

#[tokio::test]
async fn demo_observations_are_a_plausible_repeatable_year_per_station() {
    let database = TestDatabase::migrated().await;
    assert_eq!(cli(&database, &["import", "--demo", "3"]).0, 0);
    let (code, stdout, stderr) = cli(
        &database,
        &[
            "import",
            "observations",
            "--demo",
            "--stations",
            "2",
            "--days",
            "30",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("inserted 1442, duplicates 0"),
        "{stdout}"
    );
    let (_, stdout, _) = cli(
        &database,
        &[
            "import",
            "observations",
            "--demo",
            "--stations",
            "2",
            "--days",
            "30",
        ],
    );
    assert!(
        stdout.starts_with("inserted 0, duplicates 1442")
            || stdout.starts_with("inserted 2, duplicates 1440"),
        "only an hour that began since may be new: {stdout}"
    );
    let db = database.connect().await;
    assert_eq!(
        scalar(&db, "SELECT count(DISTINCT station_id) FROM observations").await,
        2
    );
}

#[tokio::test]
async fn a_spreadsheet_safe_export_defuses_formulas_and_keeps_numbers() {
    let database = TestDatabase::migrated().await;
    let stations = TempFile::with(
        "formulas.csv",
        "code,name,lat,lng,elevation_m\n\
         F1,\"=HYPERLINK(\"\"http://attacker.example\"\",\"\"click\"\")\",-12.5,-3.25,-10\n\
         F2,+1+1,1,2,\n\
         F3,@SUM(A1),1,2,\n\
         F4,-2+3,1,2,\n\
         F6,Plain name,1,2,\n"
            .as_bytes(),
    );
    let (code, _, stderr) = cli(&database, &["import", path(&stations)]);
    assert_eq!(code, 0, "{stderr}");

    let (code, safe, stderr) = cli(
        &database,
        &["export", "--format", "csv", "--spreadsheet-safe"],
    );
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = safe.lines().collect();
    assert_eq!(
        lines[1],
        "F1,\"'=HYPERLINK(\"\"http://attacker.example\"\",\"\"click\"\")\",-12.5,-3.25,-10"
    );
    assert_eq!(lines[2], "F2,'+1+1,1,2,");
    assert_eq!(lines[3], "F3,'@SUM(A1),1,2,");
    assert_eq!(lines[4], "F4,'-2+3,1,2,");
    assert_eq!(lines[5], "F6,Plain name,1,2,");

    // The default export stays exact, for import to read back.
    let (_, exact, _) = cli(&database, &["export", "--format", "csv"]);
    assert!(exact.contains("\nF4,-2+3,1,2,\n"), "{exact}");

    let (code, _, stderr) = cli(
        &database,
        &["export", "--format", "geojson", "--spreadsheet-safe"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--spreadsheet-safe is for CSV"), "{stderr}");
}
