//! Embeds `web/` in the binary: each file gzipped once at build time, with a content hash for
//! its ETag, so the appliance serves the phone app compressed without compressing per request
//! and without reading files from an SD card.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let web = root.join("web");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("out dir"));
    println!("cargo:rerun-if-changed=web");

    let mut files = Vec::new();
    collect(&web, &mut files);
    files.sort();

    let mut table = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (i, path) in files.iter().enumerate() {
        let rel = path
            .strip_prefix(&web)
            .expect("under web/")
            .to_string_lossy()
            .replace('\\', "/");
        let raw = std::fs::read(path).expect("read web file");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&raw).expect("gzip");
        let gz = enc.finish().expect("gzip");
        let gz_path = out.join(format!("web-{i}.gz"));
        std::fs::write(&gz_path, &gz).expect("write gz");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        raw.hash(&mut h);
        writeln!(
            table,
            "    Asset {{ path: {:?}, raw: include_bytes!({:?}), gz: include_bytes!({:?}), etag: \"\\\"{:016x}\\\"\" }},",
            format!("/{rel}"),
            path.display().to_string(),
            gz_path.display().to_string(),
            h.finish()
        )
        .expect("format");
    }
    table.push_str("];\n");
    std::fs::write(out.join("web_assets.rs"), table).expect("write table");
}

/// Every file under `dir` except dot files and the folder's README.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "README.md" {
            continue;
        }
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
