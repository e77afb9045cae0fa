//! The documents name only what exists: every `src/…rs`, `tests/…rs` and `bench/…rs` path
//! that README.md, SECURITY.md and ARCHITECTURE.md name is a file, and every
//! `path.rs::name` names a `fn name` inside that file. A failure names the document, the line
//! and the reference that went stale.

use std::path::PathBuf;

/// The documents whose references are checked, relative to the repository root.
const CHECKED_DOCUMENTS: &[&str] = &["README.md", "SECURITY.md", "ARCHITECTURE.md"];

/// Where a reference to a file of the repository starts.
const REFERENCE_ROOTS: &[&str] = &["src/", "tests/", "bench/"];

/// One `path.rs` or `path.rs::name` a document names, with the line it is on.
#[derive(Debug, PartialEq, Eq)]
struct DocumentReference {
    line_number: usize,
    path: String,
    function_name: Option<String>,
}

#[test]
fn every_file_and_function_the_documents_name_exists() {
    let mut problems = Vec::new();
    for document in CHECKED_DOCUMENTS {
        let text = std::fs::read_to_string(repository_root().join(document)).unwrap();
        let references = references_in(&text);
        assert!(
            !references.is_empty(),
            "{document} names no file: the scan no longer sees its references"
        );
        for reference in references {
            let location = format!("{document}:{}", reference.line_number);
            let Ok(code) = std::fs::read_to_string(repository_root().join(&reference.path)) else {
                problems.push(format!("{location}: `{}` does not exist", reference.path));
                continue;
            };
            if let Some(function_name) = &reference.function_name
                && !defines_function(&code, function_name)
            {
                problems.push(format!(
                    "{location}: `{}::{function_name}` names no `fn {function_name}` in that file",
                    reference.path
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "stale references (find where each moved with `grep -rn \"fn <name>\" src tests`):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scan_sees_references_in_every_form_the_documents_write_them() {
    let text = "A unit test is named `src/<file>.rs::<test>`; see `src/auth/mod.rs`.\n\
                Tests `tests/it/keys.rs::published_keys` and (src/store/users.rs::tests::a_test).\n\
                The benchmark, bench/src/main.rs. Folders like `src/http/` are not files.\n\
                Not a root: fuzz/src/x.rs, contrib/latchkey.service.";
    let reference =
        |line_number: usize, path: &str, function_name: Option<&str>| DocumentReference {
            line_number,
            path: path.to_owned(),
            function_name: function_name.map(str::to_owned),
        };
    assert_eq!(
        references_in(text),
        [
            reference(1, "src/auth/mod.rs", None),
            reference(2, "tests/it/keys.rs", Some("published_keys")),
            reference(2, "src/store/users.rs", Some("a_test")),
            reference(3, "bench/src/main.rs", None),
        ]
    );
    assert!(defines_function("#[test]\nfn a_test() {}", "a_test"));
    assert!(defines_function("pub async fn generic<T>() {}", "generic"));
    assert!(!defines_function("fn a_test_longer() {}", "a_test"));
    assert!(!defines_function("let a_test = 1;", "a_test"));
}

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every reference under one of `REFERENCE_ROOTS` that ends in `.rs`, with the last segment
/// of a `::` path after it as the function it names. A root counts only where a path starts,
/// so the `src/` inside `bench/src/main.rs` or `fuzz/src/x.rs` is no reference of its own.
fn references_in(text: &str) -> Vec<DocumentReference> {
    let mut references = Vec::new();
    for (line_index, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = next_reference_start(rest) {
            let candidate = &rest[start..];
            let path_length = candidate
                .find(|character: char| !is_path_character(character))
                .unwrap_or(candidate.len());
            let path = candidate[..path_length].trim_end_matches('.');
            rest = &candidate[path.len()..];
            if !path.ends_with(".rs") {
                continue;
            }
            let mut function_name = None;
            while let Some(after_separator) = rest.strip_prefix("::") {
                let name_length = after_separator
                    .find(|character: char| !is_identifier_character(character))
                    .unwrap_or(after_separator.len());
                if name_length == 0 {
                    break;
                }
                function_name = Some(after_separator[..name_length].to_owned());
                rest = &after_separator[name_length..];
            }
            references.push(DocumentReference {
                line_number: line_index + 1,
                path: path.to_owned(),
                function_name,
            });
        }
    }
    references
}

/// Where in `text` the next path under one of `REFERENCE_ROOTS` starts.
fn next_reference_start(text: &str) -> Option<usize> {
    let mut earliest: Option<usize> = None;
    for root in REFERENCE_ROOTS {
        let mut search_from = 0;
        while let Some(found) = text[search_from..].find(root) {
            let start = search_from + found;
            let starts_a_path = text[..start]
                .chars()
                .next_back()
                .is_none_or(|previous| !is_path_character(previous));
            if starts_a_path {
                earliest = Some(earliest.map_or(start, |current| current.min(start)));
                break;
            }
            search_from = start + root.len();
        }
    }
    earliest
}

fn is_path_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '/' | '-')
}

fn is_identifier_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_'
}

/// Whether `code` declares `fn function_name`, as a whole name (`fn a_test_longer` is not
/// `fn a_test`).
fn defines_function(code: &str, function_name: &str) -> bool {
    let declaration = format!("fn {function_name}");
    code.match_indices(&declaration).any(|(start, _)| {
        let before_is_boundary = code[..start]
            .chars()
            .next_back()
            .is_none_or(|previous| !is_identifier_character(previous));
        let after_is_boundary = code[start + declaration.len()..]
            .chars()
            .next()
            .is_none_or(|next| !is_identifier_character(next));
        before_is_boundary && after_is_boundary
    })
}
