//! `herald policy new`: a ready-to-build policy project from the templates in
//! `host/templates/`, compiled into the binary.

use std::path::{Path, PathBuf};

/// Languages with a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
}

struct File {
    path: &'static str,
    text: &'static str,
}

const RUST: &[File] = &[
    File {
        path: "Cargo.toml",
        text: include_str!("../templates/rust/Cargo.toml.tmpl"),
    },
    File {
        path: "src/lib.rs",
        text: include_str!("../templates/rust/src/lib.rs.tmpl"),
    },
    File {
        path: "{{file}}.samples.toml",
        text: include_str!("../templates/rust/samples.toml.tmpl"),
    },
    File {
        path: "README.md",
        text: include_str!("../templates/rust/README.md.tmpl"),
    },
];

/// Where the SDK this binary was built with lives (templates depend on it by path).
pub fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

/// Create the project `name` in `dir/name`; returns the files written.
pub fn create(dir: &Path, name: &str, lang: Lang) -> Result<Vec<PathBuf>, String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        || !name.as_bytes()[0].is_ascii_lowercase()
    {
        return Err(format!(
            "`{name}`: a policy name is lowercase letters, digits, - and _, starting with a letter"
        ));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    let file = name.replace('-', "_");
    let type_name: String = name
        .split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| p[..1].to_ascii_uppercase() + &p[1..])
        .collect();
    let sdk = std::fs::canonicalize(sdk_dir())
        .map_err(|e| format!("the Herald SDK is not at {}: {e}", sdk_dir().display()))?;
    let files = match lang {
        Lang::Rust => RUST,
    };
    let fill = |s: &str| {
        s.replace("{{name}}", name)
            .replace("{{file}}", &file)
            .replace("{{type}}", &type_name)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let mut written = Vec::new();
    for f in files {
        let path = root.join(fill(f.path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, fill(f.text)).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
