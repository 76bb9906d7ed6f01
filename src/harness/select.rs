//! Choosing cases: `--filter REGEX` on the id and `--tag T` (repeatable; a
//! case is chosen when it has any of the given tags).

use regex::Regex;

use crate::corpus::case::Tag;
use crate::corpus::LoadedCase;

/// The cases whose id matches `filter` (if any) and that carry at least one
/// of `tags` (if any), in corpus order.
pub fn select(cases: Vec<LoadedCase>, filter: Option<&Regex>, tags: &[Tag]) -> Vec<LoadedCase> {
    cases
        .into_iter()
        .filter(|c| filter.is_none_or(|re| re.is_match(&c.case.id)))
        .filter(|c| tags.is_empty() || c.case.tags.iter().any(|t| tags.contains(t)))
        .collect()
}
