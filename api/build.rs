//! Embeds the GraphiQL IDE, built from npm packages into `api/ide/dist` by
//! `npm --prefix api/ide ci && npm --prefix api/ide run build`, into the binary, so that the
//! server needs no asset directory at run time and no CDN ever. The build is committed (CI
//! checks that the lockfile builds exactly it), so compiling the API needs no Node.js.
//!
//! Without `dist/` the binary still compiles: it embeds nothing and its IDE page says what to
//! run. The generated file lists every asset with its content type and its bytes.

use std::{
    env,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ide = manifest_dir.join("ide");
    let dist = ide.join("dist");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("ide_assets.rs");

    let index = dist.join("index.html");
    let mut generated = String::new();
    if index.is_file() {
        println!("cargo:rerun-if-changed={}", dist.display());
        let _ = writeln!(
            generated,
            "pub static INDEX_HTML: Option<&str> = Some(include_str!({:?}));",
            index.display().to_string()
        );
        let mut files = Vec::new();
        collect(&dist.join("assets"), &mut files);
        files.sort();
        generated.push_str("pub static ASSETS: &[(&str, &str, &[u8])] = &[\n");
        for file in files {
            let name = file
                .strip_prefix(dist.join("assets"))
                .expect("under assets/")
                .to_string_lossy()
                .replace('\\', "/");
            let _ = writeln!(
                generated,
                "    ({name:?}, {:?}, include_bytes!({:?})),",
                content_type(&file),
                file.display().to_string()
            );
        }
        generated.push_str("];\n");
    } else {
        // Watch the folder that will receive dist/, so that building the IDE later rebuilds us.
        println!("cargo:rerun-if-changed={}", ide.display());
        println!(
            "cargo:warning=GraphiQL assets not built: the IDE page will say to run \
             `npm --prefix api/ide ci && npm --prefix api/ide run build`"
        );
        generated.push_str("pub static INDEX_HTML: Option<&str> = None;\n");
        generated.push_str("pub static ASSETS: &[(&str, &str, &[u8])] = &[];\n");
    }
    // Rewritten only when it changes, so that an unchanged IDE does not recompile the crate.
    if fs::read_to_string(&out).ok().as_deref() != Some(generated.as_str()) {
        fs::write(&out, generated).expect("write ide_assets.rs");
    }
}

fn collect(directory: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|extension| extension.to_str()) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ttf") => "font/ttf",
        Some("woff") => "font/woff",
        Some("woff2") => "font/woff2",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}
