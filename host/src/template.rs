//! `herald policy new`: a ready-to-build policy project from the templates in
//! `host/templates/`, compiled into the binary.

use std::path::{Path, PathBuf};

/// Languages with a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    C,
}

impl Lang {
    /// What to run after `policy new`, from the project directory.
    pub fn next_steps(self) -> &'static str {
        match self {
            Lang::Rust => "cargo test && cargo build --release --target wasm32-wasip2",
            Lang::Python | Lang::Js | Lang::C => "./build.sh",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
            Lang::C => "C",
        }
    }

    fn files(self) -> &'static [File] {
        match self {
            Lang::Rust => RUST,
            Lang::Python => PYTHON,
            Lang::Js => JS,
            Lang::C => C,
        }
    }
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
    SAMPLES,
    File {
        path: "README.md",
        text: include_str!("../templates/rust/README.md.tmpl"),
    },
];

const SAMPLES: File = File {
    path: "{{file}}.samples.toml",
    text: include_str!("../templates/rust/samples.toml.tmpl"),
};
const WIT: File = File {
    path: "wit/policy.wit",
    text: include_str!("../../wit/policy.wit"),
};
const README: File = File {
    path: "README.md",
    text: include_str!("../templates/README.md.other.tmpl"),
};

const PYTHON: &[File] = &[
    File {
        path: "app.py",
        text: include_str!("../templates/python/app.py.tmpl"),
    },
    File {
        path: "build.sh",
        text: include_str!("../templates/python/build.sh.tmpl"),
    },
    SAMPLES,
    WIT,
    README,
];

const JS: &[File] = &[
    File {
        path: "policy.js",
        text: include_str!("../templates/js/policy.js.tmpl"),
    },
    File {
        path: "build.sh",
        text: include_str!("../templates/js/build.sh.tmpl"),
    },
    SAMPLES,
    WIT,
    README,
];

const C: &[File] = &[
    File {
        path: "policy.c",
        text: include_str!("../templates/c/policy.c.tmpl"),
    },
    File {
        path: "build.sh",
        text: include_str!("../templates/c/build.sh.tmpl"),
    },
    SAMPLES,
    WIT,
    README,
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
    let isolation = match lang {
        Lang::Python | Lang::Js => {
            "Run it with `isolation = \"reuse\"` under `[policy]`: an interpreted guest costs a millisecond to instantiate and microseconds to call."
        }
        Lang::Rust | Lang::C => "",
    };
    let fill = |s: &str| {
        s.replace("{{name}}", name)
            .replace("{{file}}", &file)
            .replace("{{type}}", &type_name)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{language}}", lang.name())
            .replace("{{isolation}}", isolation)
    };
    let mut written = Vec::new();
    for f in lang.files() {
        let path = root.join(fill(f.path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, fill(f.text)).map_err(|e| format!("{}: {e}", path.display()))?;
        if f.path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        written.push(path);
    }
    Ok(written)
}
