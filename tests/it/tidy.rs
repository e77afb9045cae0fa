//! Tidy checks that read the sources rather than run them: the layering ARCHITECTURE.md
//! states (which module may name which crate and which other module), and the conventions
//! every file follows. A failure names the file and the rule it breaks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where each external crate may be named: the files or folders under `src/` that own it.
const CRATE_OWNERS: &[(&str, &[&str])] = &[
    // Each backend's driver stays in its backend (and the store's one error type).
    ("redb", &["store/redb_backend/", "store/error.rs"]),
    (
        "tokio_postgres",
        &["store/postgres_backend/", "store/error.rs"],
    ),
    ("deadpool_postgres", &["store/postgres_backend/"]),
    ("hyper", &["http/", "server.rs"]),
    ("hyper_util", &["http/", "server.rs"]),
    ("http_body_util", &["http/", "server.rs"]),
    ("matchit", &["http/"]),
    ("prometheus_client", &["http/metrics/"]),
    ("pasetors", &["auth/signed_token.rs"]),
    ("argon2", &["auth/password.rs"]),
    ("jsonwebtoken", &["auth/oauth/"]),
    ("lettre", &["mail.rs", "mail/"]),
    (
        "reqwest",
        &["auth/oauth/provider.rs", "auth/captcha.rs", "app.rs"],
    ),
    ("idna", &["model/email_address.rs"]),
    ("icu_normalizer", &["model/email_address.rs"]),
    ("icu_properties", &["model/email_address.rs"]),
    ("askama", &["http/pages/"]),
    (
        "hmac",
        &["http/pages/csrf.rs", "auth/second_factor/totp.rs"],
    ),
    ("sha1", &["auth/second_factor/totp.rs"]),
    ("webauthn_rs", &["webauthn.rs"]),
    ("qrcode", &["http/pages/qr_code.rs"]),
];

/// Calls that only the process's entry point makes: `run` and the library never read the
/// environment, install signal handlers or bind the listener (tests pass their own).
const ENTRY_POINT_ONLY: &[&str] = &[
    "env::var",
    "env::vars",
    "tokio::signal",
    "TcpListener::bind",
];

/// The layers each layer must not import (by the first module of a `crate::` path).
const FORBIDDEN_IMPORTS: &[(&str, &[&str])] = &[
    (
        "model",
        &[
            "auth", "store", "http", "config", "app", "mail", "server", "admin", "cli", "webauthn",
        ],
    ),
    (
        "config",
        &[
            "auth", "store", "http", "mail", "app", "server", "admin", "cli", "webauthn",
        ],
    ),
    (
        "store",
        &[
            "auth", "http", "config", "mail", "app", "server", "admin", "cli", "webauthn",
        ],
    ),
    (
        "mail",
        &["auth", "http", "server", "admin", "cli", "webauthn"],
    ),
    ("auth", &["http", "server", "admin", "cli"]),
    ("http", &["store", "server", "admin", "cli", "webauthn"]),
    (
        "server",
        &[
            "auth", "store", "mail", "config", "admin", "cli", "webauthn",
        ],
    ),
    (
        "webauthn",
        &[
            "auth", "store", "http", "config", "app", "mail", "server", "admin", "cli",
        ],
    ),
];

/// The one module that names webauthn-rs, whose types are serde types: it hands `auth` plain
/// values and opaque bytes, so no public item of it may name a webauthn-rs type.
const WEBAUTHN_ADAPTER: &str = "webauthn.rs";

/// Modules whose types are domain types: they derive no serde traits (wire types live in
/// `http/dto.rs`, stored records in `store/redb_backend/record.rs`).
const SERDE_FREE_LAYERS: &[&str] = &["model", "auth"];

#[test]
fn each_external_crate_is_named_only_by_the_module_that_owns_it() {
    let mut problems = Vec::new();
    for file in source_files() {
        let named = external_crates_named(&file.code);
        for (crate_name, owners) in CRATE_OWNERS {
            let owned_here = owners.iter().any(|owner| file.relative.starts_with(owner));
            if named.contains(*crate_name) && !owned_here {
                problems.push(format!(
                    "src/{} names `{crate_name}`, which only {owners:?} may use",
                    file.relative
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_the_command_line_reads_the_environment_binds_or_installs_signal_handlers() {
    let mut problems = Vec::new();
    for file in source_files() {
        // The unit tests' fixtures read where their test database is; they are not the server.
        if file.relative == "cli.rs" || file.relative.ends_with("/test_support.rs") {
            continue;
        }
        for call in ENTRY_POINT_ONLY {
            if file.code.contains(call) {
                problems.push(format!(
                    "src/{} calls `{call}`, which only src/cli.rs may",
                    file.relative
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let mut problems = Vec::new();
    for file in source_files() {
        let layer = file.layer();
        let Some((_, forbidden)) = FORBIDDEN_IMPORTS.iter().find(|(name, _)| *name == layer) else {
            continue;
        };
        for module in crate_modules_named(&file.code) {
            if forbidden.contains(&module.as_str()) {
                problems.push(format!(
                    "src/{} ({layer}) imports crate::{module}",
                    file.relative
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn domain_types_derive_no_serde_traits() {
    let mut problems = Vec::new();
    for file in source_files() {
        if !SERDE_FREE_LAYERS.contains(&file.layer()) {
            continue;
        }
        for word in ["Serialize", "Deserialize", "serde::"] {
            if file.code.contains(word) {
                problems.push(format!("src/{} names `{word}`", file.relative));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_webauthn_adapter_lets_no_webauthn_type_out() {
    let file = source_files()
        .into_iter()
        .find(|file| file.relative == WEBAUTHN_ADAPTER)
        .expect("the WebAuthn adapter exists");
    let code = file.code.split("#[cfg(test)]").next().unwrap_or_default();
    let imported = webauthn_names_imported(code);
    assert!(
        imported.contains("Webauthn") && imported.contains("Passkey"),
        "the scan no longer sees the adapter's imports: {imported:?}"
    );
    let mut problems = Vec::new();
    for signature in public_signatures(code) {
        for name in &imported {
            if names_word(&signature, name) {
                problems.push(format!("`{}` names `{name}`", signature.trim()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "src/{WEBAUTHN_ADAPTER} lets webauthn-rs types out:\n{}",
        problems.join("\n")
    );
}

/// The names a file imports from webauthn-rs (`use webauthn_rs::…::{A, B};`).
fn webauthn_names_imported(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        let Some(path) = statement.strip_prefix("use webauthn_rs::") else {
            continue;
        };
        let list = match path.split_once('{') {
            Some((_, group)) => group.trim_end_matches('}').to_owned(),
            None => path.rsplit("::").next().unwrap_or_default().to_owned(),
        };
        for name in list.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The public surface of a file: each `pub fn` up to its body, and each other `pub` line
/// (fields, types, constants).
fn public_signatures(code: &str) -> Vec<String> {
    let mut signatures = Vec::new();
    let mut rest = code;
    while let Some(start) = rest.find("pub ") {
        let after = &rest[start..];
        let end = if after.starts_with("pub fn ") {
            after.find('{').unwrap_or(after.len())
        } else {
            after.find('\n').unwrap_or(after.len())
        };
        signatures.push(after[..end].to_owned());
        rest = &after[end..];
    }
    signatures
}

/// Whether `name` appears in `text` as a whole word.
fn names_word(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(position, _)| {
        let is_word = |character: char| character.is_alphanumeric() || character == '_';
        let before = text[..position].chars().next_back();
        let after = text[position + name.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

#[test]
fn there_are_no_global_variables() {
    let mut problems = Vec::new();
    for file in source_files() {
        for line in file.code.lines() {
            let line = line.trim_start();
            let declares_static = line.starts_with("static ") || line.starts_with("pub static ");
            if line.contains("thread_local!") || (declares_static && !is_immutable_static(line)) {
                problems.push(format!("src/{}: `{}`", file.relative, line.trim()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "global state:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_source_file_opens_with_a_module_comment() {
    let mut problems = Vec::new();
    for root in ["src", "tests", "bench/src"] {
        for path in rust_files_under(&manifest_dir().join(root)) {
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.starts_with("//!") {
                problems.push(path.display().to_string());
            }
        }
    }
    assert!(
        problems.is_empty(),
        "files without a leading `//!` line:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checks_see_imports_in_every_form_they_are_written() {
    let code = strip_comments_and_literals(
        "use crate::{auth::Identity, store};\n\
         // crate::mail in a comment\n\
         let text = \"crate::server in a string\";\n\
         let quote = '\"'; fn f<'a>(x: &'a str) {}\n\
         use crate::config::Config; let key = redb::TableDefinition::new(\"t\");",
    );
    let modules = crate_modules_named(&code);
    assert_eq!(
        modules,
        ["auth", "config", "store"]
            .map(String::from)
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(
        external_crates_named(&code),
        ["redb"]
            .map(String::from)
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
}

/// One source file under `src/`, with its code stripped of comments and literals.
struct SourceFile {
    /// The path under `src/`, with `/` separators.
    relative: String,
    code: String,
}

impl SourceFile {
    /// The layer: the first component of the path (`store` for `src/store/users.rs`,
    /// `server` for `src/server.rs`).
    fn layer(&self) -> &str {
        let first = self.relative.split('/').next().unwrap_or_default();
        first.strip_suffix(".rs").unwrap_or(first)
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn source_files() -> Vec<SourceFile> {
    let source_root = manifest_dir().join("src");
    let files: Vec<SourceFile> = rust_files_under(&source_root)
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&source_root).unwrap();
            let relative = relative.to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&path).unwrap();
            SourceFile {
                relative,
                code: strip_comments_and_literals(&text),
            }
        })
        .collect();
    assert!(files.len() > 20, "found only {} source files", files.len());
    files
}

fn rust_files_under(directory: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(directory) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(rust_files_under(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// A static that holds no interior mutability: a constant table or a string.
fn is_immutable_static(line: &str) -> bool {
    let holds_state = [
        "Mutex", "RwLock", "OnceLock", "LazyLock", "Cell", "Atomic", "mut ",
    ];
    !holds_state.iter().any(|word| line.contains(word))
}

/// The code with comments, string literals and character literals blanked out, so a path
/// in a comment or a message does not count as an import. Line breaks are kept.
fn strip_comments_and_literals(text: &str) -> String {
    let characters: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut index = 0;
    while index < characters.len() {
        let current = characters[index];
        let next = characters.get(index + 1).copied();
        let previous_is_identifier =
            index > 0 && (characters[index - 1].is_alphanumeric() || characters[index - 1] == '_');
        if current == '/' && next == Some('/') {
            while index < characters.len() && characters[index] != '\n' {
                index += 1;
            }
        } else if current == '/' && next == Some('*') {
            index += 2;
            while index < characters.len()
                && !(characters[index] == '*' && characters.get(index + 1) == Some(&'/'))
            {
                if characters[index] == '\n' {
                    code.push('\n');
                }
                index += 1;
            }
            index += 2;
        } else if current == 'r' && !previous_is_identifier && matches!(next, Some('"' | '#')) {
            let mut hashes = 0;
            let mut cursor = index + 1;
            while characters.get(cursor) == Some(&'#') {
                hashes += 1;
                cursor += 1;
            }
            if characters.get(cursor) != Some(&'"') {
                code.push(current);
                index += 1;
                continue;
            }
            cursor += 1;
            loop {
                if cursor >= characters.len() {
                    break;
                }
                if characters[cursor] == '"'
                    && (1..=hashes).all(|offset| characters.get(cursor + offset) == Some(&'#'))
                {
                    cursor += 1 + hashes;
                    break;
                }
                if characters[cursor] == '\n' {
                    code.push('\n');
                }
                cursor += 1;
            }
            code.push_str("\"\"");
            index = cursor;
        } else if current == '"' {
            index += 1;
            while index < characters.len() && characters[index] != '"' {
                if characters[index] == '\\' {
                    index += 1;
                }
                if characters.get(index) == Some(&'\n') {
                    code.push('\n');
                }
                index += 1;
            }
            index += 1;
            code.push_str("\"\"");
        } else if current == '\'' && next == Some('\\') {
            // Quote, backslash and the escaped character, then on to the closing quote.
            index += 3;
            while index < characters.len() && characters[index] != '\'' {
                index += 1;
            }
            index += 1;
            code.push_str("' '");
        } else if current == '\'' && characters.get(index + 2) == Some(&'\'') {
            index += 3;
            code.push_str("' '");
        } else {
            code.push(current);
            index += 1;
        }
    }
    code
}

/// The first module of every `crate::` path in the code, including each top-level name
/// of a grouped `crate::{a, b::c}` import.
fn crate_modules_named(code: &str) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for (position, _) in code.match_indices("crate::") {
        let preceded_by_identifier = code[..position]
            .chars()
            .next_back()
            .is_some_and(|character| character.is_alphanumeric() || character == '_');
        if preceded_by_identifier {
            continue;
        }
        let rest = &code[position + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut name = String::new();
            let mut at_top_level_name = true;
            for character in group.chars() {
                match character {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        at_top_level_name = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && at_top_level_name {
                    if character.is_alphanumeric() || character == '_' {
                        name.push(character);
                    } else if !name.is_empty() {
                        modules.insert(std::mem::take(&mut name));
                        at_top_level_name = false;
                    }
                }
            }
            if !name.is_empty() {
                modules.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|character| character.is_alphanumeric() || *character == '_')
                .collect();
            if !name.is_empty() {
                modules.insert(name);
            }
        }
    }
    modules
}

/// The external crates of `CRATE_OWNERS` that the code names, as `name::` or `use name`.
fn external_crates_named(code: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (crate_name, _) in CRATE_OWNERS {
        for (position, _) in code.match_indices(crate_name) {
            let before = code[..position].chars().next_back();
            let standalone_start = !before.is_some_and(|character| {
                character.is_alphanumeric() || character == '_' || character == ':'
            });
            let after = &code[position + crate_name.len()..];
            let used_as_path = after.starts_with("::")
                || (code[..position].trim_end().ends_with("use") && after.starts_with([';', ' ']));
            if standalone_start && used_as_path {
                named.insert((*crate_name).to_string());
            }
        }
    }
    named
}
