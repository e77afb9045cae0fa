//! Where each configuration key got its value: the built-in default, a line of the config
//! file, an environment variable or a flag. `Config::load` records them as it layers, so that
//! every configuration error, a refused value included, names the key and where it was set.

use std::collections::BTreeMap;
use std::fmt;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where one key's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// Not set anywhere: the built-in default.
    Default,
    /// A line of the config file (1-based), where the key is written.
    File { path: String, line: usize },
    /// A `LATCHKEY_` environment variable.
    Environment { name: String },
    /// A command-line flag such as `--listen`.
    Flag { name: &'static str },
}

impl fmt::Display for KeySource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Default => formatter.write_str("the default"),
            KeySource::File { path, line } => write!(formatter, "config file {path}, line {line}"),
            KeySource::Environment { name } => write!(formatter, "environment variable {name}"),
            KeySource::Flag { name } => write!(formatter, "flag {name}"),
        }
    }
}

/// The source of every key set by a layer; a key no layer set is `KeySource::Default`.
/// Keys are dotted paths as in the file: `session.short_term_seconds`,
/// `oauth.providers[1].issuer`.
#[derive(Clone, Debug, Default)]
pub struct KeySources {
    sources: BTreeMap<String, KeySource>,
}

impl KeySources {
    /// Where `key` was set. A key inside a table that was set as a whole (an
    /// `[[oauth.providers]]` table without `issuer`) answers the table's source.
    pub fn of(&self, key: &str) -> KeySource {
        let mut candidate = key;
        loop {
            if let Some(source) = self.sources.get(candidate) {
                return source.clone();
            }
            let Some(parent_end) = candidate.rfind(['.', '[']) else {
                return KeySource::Default;
            };
            candidate = &candidate[..parent_end];
        }
    }

    /// `key (source)`, for a message that names a second key.
    pub fn describe(&self, key: &str) -> String {
        format!("{key} ({})", self.of(key))
    }

    pub fn set(&mut self, key: String, source: KeySource) {
        // A later layer replaces the key, and with it whatever the file said inside it.
        let nested_prefixes = [format!("{key}."), format!("{key}[")];
        self.sources.retain(|recorded, _| {
            !nested_prefixes
                .iter()
                .any(|prefix| recorded.starts_with(prefix.as_str()))
        });
        self.sources.insert(key, source);
    }

    /// Records every value the file writes, with the line its key is on. A `[section]` is
    /// no value: its keys are, and one it leaves out is the default. A table in an array
    /// (`[[oauth.providers]]`) is recorded too, for what a provider lacks.
    pub fn record_file(&mut self, path: &str, text: &str, document: &DeTable<'_>) {
        for entry in file_entries(document) {
            if entry.is_table && !entry.is_array_item {
                continue;
            }
            let line = position_in_text(text, entry.key_span.start).line;
            self.set(
                entry.key,
                KeySource::File {
                    path: path.to_owned(),
                    line,
                },
            );
        }
    }
}

/// A line and column in a text, both 1-based; the column counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextPosition {
    pub line: usize,
    pub column: usize,
}

/// The position of a byte offset; an offset past the end is the end.
pub fn position_in_text(text: &str, offset: usize) -> TextPosition {
    // Past the end or not on a character boundary (no TOML error points there): the end.
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    TextPosition {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// The key of the file that the byte offset lies in (its name or its value): the most deeply
/// nested one, so an error in `[[oauth.providers]]`'s `kind` names
/// `oauth.providers[0].kind`. `None` when the offset is in no key (a comment, a blank).
pub fn key_at_offset(document: &DeTable<'_>, offset: usize) -> Option<String> {
    let contains = |span: &std::ops::Range<usize>| {
        span.contains(&offset) || (span.is_empty() && span.start == offset)
    };
    file_entries(document)
        .into_iter()
        .filter(|entry| contains(&entry.key_span) || contains(&entry.value_span))
        .max_by_key(|entry| entry.depth)
        .map(|entry| entry.key)
}

/// One key written in the file: its dotted path, depth, and the spans of its name and value
/// (for a `[section]` or `[[array]]` table, the value span is the header).
struct FileEntry {
    key: String,
    depth: usize,
    is_table: bool,
    is_array_item: bool,
    key_span: std::ops::Range<usize>,
    value_span: std::ops::Range<usize>,
}

fn file_entries(document: &DeTable<'_>) -> Vec<FileEntry> {
    let mut entries = Vec::new();
    collect_table_entries(document, "", 0, &mut entries);
    entries
}

fn collect_table_entries(
    table: &DeTable<'_>,
    prefix: &str,
    depth: usize,
    entries: &mut Vec<FileEntry>,
) {
    for (name, value) in table {
        let key = format!("{prefix}{}", name.get_ref());
        collect_value_entries(&key, name.span(), value, depth, false, entries);
    }
}

fn collect_value_entries(
    key: &str,
    key_span: std::ops::Range<usize>,
    value: &Spanned<DeValue<'_>>,
    depth: usize,
    is_array_item: bool,
    entries: &mut Vec<FileEntry>,
) {
    entries.push(FileEntry {
        key: key.to_owned(),
        depth,
        is_table: value.get_ref().is_table(),
        is_array_item,
        key_span: key_span.clone(),
        value_span: value.span(),
    });
    match value.get_ref() {
        DeValue::Table(table) => {
            collect_table_entries(table, &format!("{key}."), depth + 1, entries)
        }
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                // Only tables inside arrays are keys of their own (`[[oauth.providers]]`).
                if item.get_ref().is_table() {
                    let item_key = format!("{key}[{index}]");
                    let item_span = item.span();
                    collect_value_entries(&item_key, item_span, item, depth + 1, true, entries);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[password]\nmin_length = 8\n\n[[oauth.providers]]\nname = \"a\"\n\n\
                        [[oauth.providers]]\nname = \"b\"\nkind = \"oidc\"\n";

    #[test]
    fn file_keys_are_recorded_with_their_lines_and_parents_answer_for_unset_children() {
        let document = DeTable::parse(TEXT).unwrap();
        let mut sources = KeySources::default();
        sources.record_file("x.toml", TEXT, document.get_ref());
        let line = |line| KeySource::File {
            path: "x.toml".to_owned(),
            line,
        };
        assert_eq!(sources.of("password.min_length"), line(2));
        assert_eq!(sources.of("oauth.providers[1].kind"), line(9));
        assert_eq!(sources.of("oauth.providers[1].issuer"), line(7));
        assert_eq!(sources.of("password.memory_kib"), KeySource::Default);
        assert_eq!(sources.of("session.max_per_user"), KeySource::Default);

        let variable = KeySource::Environment {
            name: "LATCHKEY_PASSWORD__MIN_LENGTH".to_owned(),
        };
        sources.set("password.min_length".to_owned(), variable.clone());
        assert_eq!(sources.of("password.min_length"), variable);
        assert_eq!(
            sources.describe("password.min_length"),
            "password.min_length (environment variable LATCHKEY_PASSWORD__MIN_LENGTH)"
        );
    }

    #[test]
    fn an_offset_names_the_innermost_key_and_its_line_and_column() {
        let document = DeTable::parse(TEXT).unwrap();
        let kind_value = TEXT.find("\"oidc\"").unwrap();
        assert_eq!(
            key_at_offset(document.get_ref(), kind_value).as_deref(),
            Some("oauth.providers[1].kind")
        );
        let min_length = TEXT.find("min_length").unwrap();
        assert_eq!(
            key_at_offset(document.get_ref(), min_length).as_deref(),
            Some("password.min_length")
        );
        assert_eq!(
            key_at_offset(document.get_ref(), TEXT.find("\n\n").unwrap() + 1),
            None
        );
        assert_eq!(
            position_in_text(TEXT, kind_value),
            TextPosition { line: 9, column: 8 }
        );
        assert_eq!(
            position_in_text("é = 1\nb", 9),
            TextPosition { line: 2, column: 2 }
        );
        assert_eq!(
            position_in_text("ab", 99),
            TextPosition { line: 1, column: 3 }
        );
    }
}
