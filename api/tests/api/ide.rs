//! The GraphiQL IDE in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from api/ide/package.json): npm is already needed to build the IDE, and
//! Playwright's locators wait for Monaco's editors reliably, where driving the DevTools
//! protocol from Rust would mean a large extra dependency and hand-written waiting. This test
//! owns the server and its database; the script owns the browser.

use std::path::Path;

use crate::helpers::{run_node_script, spawn_app};

#[tokio::test]
async fn the_ide_runs_a_query_and_shows_a_refusal_without_leaving_the_server() {
    let ide = Path::new(env!("CARGO_MANIFEST_DIR")).join("ide");
    assert!(
        ide.join("node_modules/playwright-core").is_dir(),
        "run `npm --prefix api/ide ci` first (bash .ci/run does)"
    );
    assert!(
        Path::new("/usr/bin/chromium").is_file() || std::env::var_os("CHROMIUM").is_some(),
        "install Debian's chromium package (bash .ci/run does), or set CHROMIUM"
    );

    let app = spawn_app().await;
    // The subscription the script runs must not start before the server listens (it would
    // see a RESYNC first).
    crate::live::wait_until_listening(&[&app.address]).await;
    let names = ["Amsterdam Centraal", "Bern", "Čierna nad Tisou"];
    for (index, name) in names.iter().enumerate() {
        app.create_station(&format!("E2E{index}"), name, 50.0, 10.0)
            .await;
    }

    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ide-e2e");
    let url = format!("{}/graphql", app.address);
    let expect = names.join(",");
    run_node_script(
        ide.join("e2e/ide.e2e.mjs"),
        vec![
            "--url".into(),
            url,
            "--expect".into(),
            expect,
            "--out".into(),
            out.display().to_string(),
        ],
    )
    .await;
    assert!(
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("ide-e2e/graphiql.png")
            .is_file()
    );
}
