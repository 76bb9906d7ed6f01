//! Where each node of a YAML document is, by path, so that checks made after
//! deserialisation (duplicate ids, bad regexes, unknown template variables)
//! can still point at `file:line:column`.
//!
//! Paths look like `expect.stdout.regex`, `setup.files[0].size` and
//! `expect.oracles.dns`. The index is built from the parser's event stream
//! (serde-saphyr's own parser, `granit_parser`), so it sees the document
//! exactly as the deserialiser did.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub col: u64,
}

impl Pos {
    /// The start of a file, for problems with no better place.
    pub const START: Pos = Pos { line: 1, col: 1 };
}

/// One scalar of the document (a value or a mapping key) and where it is.
#[derive(Debug, Clone)]
pub struct ScalarAt {
    /// The path of the node the scalar belongs to. For a key, the path of
    /// the entry it introduces.
    pub path: String,
    /// The scalar's text, after YAML escapes.
    pub text: String,
    /// Where it starts.
    pub pos: Pos,
    /// True for a mapping key.
    pub is_key: bool,
}

/// Node positions of one YAML document.
#[derive(Debug, Default)]
pub struct Index {
    /// Path → position of the key introducing it (mapping entries).
    keys: HashMap<String, Pos>,
    /// Path → position of the node itself.
    nodes: HashMap<String, Pos>,
    /// Every scalar, in document order.
    scalars: Vec<ScalarAt>,
    /// Every explicit tag (`!custom`, `!!binary`, `!<tag:…>`), as written,
    /// with the position of the node it is on.
    tags: Vec<(Pos, String)>,
}

impl Index {
    /// Indexes the first document of `text`; `line_offset` is added to every
    /// line (the document's first line in its file, minus one). A text the
    /// parser rejects gives an empty index: the deserialiser reports the
    /// syntax error itself.
    pub fn build(text: &str, line_offset: u64) -> Index {
        let mut index = Index::default();
        let mut stack: Vec<Frame> = Vec::new();
        let pos = |line: usize, col: usize| Pos {
            line: line as u64 + line_offset,
            col: col as u64 + 1,
        };
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else {
                break;
            };
            let at = pos(span.start.line(), span.start.col());
            if let Event::Scalar(.., Some(tag))
            | Event::MappingStart(.., Some(tag))
            | Event::SequenceStart(.., Some(tag)) = &event
            {
                let tag_at = span.tag_start().map_or(at, |m| pos(m.line(), m.col()));
                index
                    .tags
                    .push((tag_at, format!("{}{}", tag.original_handle(), tag.suffix())));
            }
            match event {
                Event::DocumentEnd => break,
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map {
                        pending_key: pending @ None,
                        path,
                    }) = stack.last_mut()
                    {
                        let child = join(path, &value);
                        index.keys.insert(child.clone(), at);
                        index.scalars.push(ScalarAt {
                            path: child.clone(),
                            text: value.into_owned(),
                            pos: at,
                            is_key: true,
                        });
                        *pending = Some(child);
                        continue;
                    }
                    let path = next_child(&mut stack);
                    index.nodes.insert(path.clone(), at);
                    index.scalars.push(ScalarAt {
                        path,
                        text: value.into_owned(),
                        pos: at,
                        is_key: false,
                    });
                }
                Event::Alias(_) => {
                    let path = next_child(&mut stack);
                    index.nodes.insert(path, at);
                }
                Event::MappingStart(..) => {
                    let path = next_child(&mut stack);
                    index.nodes.insert(path.clone(), at);
                    stack.push(Frame::Map {
                        path,
                        pending_key: None,
                    });
                }
                Event::SequenceStart(..) => {
                    let path = next_child(&mut stack);
                    index.nodes.insert(path.clone(), at);
                    stack.push(Frame::Seq { path, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        index
    }

    /// Where the field at `path` is: its key when it is a mapping entry,
    /// else the node; else the nearest enclosing field that is known.
    pub fn field(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.keys.get(p).or_else(|| self.nodes.get(p)) {
                return Some(*pos);
            }
            p = parent(p)?;
        }
    }

    /// Where the value at `path` is (falls back to [`Index::field`]).
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.nodes.get(path).copied().or_else(|| self.field(path))
    }

    /// Every scalar, keys included, in document order.
    pub fn scalars(&self) -> &[ScalarAt] {
        &self.scalars
    }

    /// Every explicit YAML tag in the document and where its node is. The
    /// case format has no use for tags, and a tag can change what a value
    /// means (`!!binary`, `!!float`) or name a type a loader would build, so
    /// the loader refuses them.
    pub fn tags(&self) -> &[(Pos, String)] {
        &self.tags
    }
}

enum Frame {
    Map {
        path: String,
        /// The key just read, whose value comes next.
        pending_key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

/// The path of the node that starts now, in the innermost collection.
fn next_child(stack: &mut [Frame]) -> String {
    match stack.last_mut() {
        None => String::new(),
        Some(Frame::Map { pending_key, path }) => {
            // A complex (non-scalar) key has no pending scalar key: give it
            // the map's own path; such keys are rejected by deserialisation.
            pending_key.take().unwrap_or_else(|| path.clone())
        }
        Some(Frame::Seq { path, next }) => {
            let p = format!("{path}[{next}]");
            *next += 1;
            p
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → None.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "id: a.b\nexpect:\n  stdout:\n    regex: \"(\"\n  oracles: {dns: {received: 0}}\nsetup:\n  files:\n    - path: x\n      size: 12 parsecs\n";

    #[test]
    fn index_finds_keys_values_and_list_items() {
        let ix = Index::build(DOC, 0);
        assert_eq!(ix.field("id"), Some(Pos { line: 1, col: 1 }));
        assert_eq!(ix.value("id"), Some(Pos { line: 1, col: 5 }));
        assert_eq!(
            ix.field("expect.stdout.regex"),
            Some(Pos { line: 4, col: 5 })
        );
        assert_eq!(
            ix.field("expect.oracles.dns"),
            Some(Pos { line: 5, col: 13 })
        );
        assert_eq!(
            ix.field("setup.files[0].size"),
            Some(Pos { line: 9, col: 7 })
        );
        assert_eq!(ix.value("setup.files[0]"), Some(Pos { line: 8, col: 7 }));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_known_parent() {
        let ix = Index::build(DOC, 10);
        assert_eq!(
            ix.field("expect.stdout.nope"),
            Some(Pos { line: 13, col: 3 })
        );
        // The document root is the last resort.
        assert_eq!(ix.field("missing"), Some(Pos { line: 11, col: 1 }));
    }
}
