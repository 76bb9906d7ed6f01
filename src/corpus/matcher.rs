//! Evaluating the small value languages of the case format: integer
//! matchers (`">=1"`, `{not: 0}`) and Landlock ABI requirements (`">=4"`,
//! `"none"`). Both are validated at load, so a typo never reaches a run.

use std::fmt;

use super::case::{IntMatcher, IntSet};

/// A comparison operator of an [`IntMatcher::Cmp`] or an ABI requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    /// Applies the operator: `lhs OP rhs`.
    pub fn holds(self, lhs: i64, rhs: i64) -> bool {
        match self {
            CmpOp::Ge => lhs >= rhs,
            CmpOp::Le => lhs <= rhs,
            CmpOp::Gt => lhs > rhs,
            CmpOp::Lt => lhs < rhs,
            CmpOp::Eq => lhs == rhs,
            CmpOp::Ne => lhs != rhs,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CmpOp::Ge => ">=",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Lt => "<",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

/// Parses `">=1"`, `"< 3"`, `"==2"`, `"!=0"`: an operator, then an integer.
pub fn parse_cmp(s: &str) -> Result<(CmpOp, i64), String> {
    let t = s.trim();
    let ops = [
        (">=", CmpOp::Ge),
        ("<=", CmpOp::Le),
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        (">", CmpOp::Gt),
        ("<", CmpOp::Lt),
    ];
    let (op, rest) = ops
        .iter()
        .find_map(|(text, op)| t.strip_prefix(text).map(|rest| (*op, rest)))
        .ok_or_else(|| {
            format!("invalid comparison {s:?}: expected an operator (>=, <=, >, <, ==, !=) then an integer")
        })?;
    let n = rest.trim().parse::<i64>().map_err(|_| {
        format!(
            "invalid comparison {s:?}: {:?} is not an integer",
            rest.trim()
        )
    })?;
    Ok((op, n))
}

impl IntMatcher {
    /// Checks the matcher is well formed (a comparison string parses).
    pub fn check(&self) -> Result<(), String> {
        match self {
            IntMatcher::Cmp(s) => parse_cmp(s).map(|_| ()),
            IntMatcher::Set(IntSet::In(v)) if v.is_empty() => {
                Err("`in: []` matches nothing: list at least one value".into())
            }
            _ => Ok(()),
        }
    }

    /// True when `v` matches. A malformed comparison matches nothing (it is
    /// rejected at load, see [`IntMatcher::check`]).
    pub fn matches(&self, v: i64) -> bool {
        match self {
            IntMatcher::Eq(n) => v == *n,
            IntMatcher::Cmp(s) => parse_cmp(s).is_ok_and(|(op, n)| op.holds(v, n)),
            IntMatcher::Set(IntSet::Not(n)) => v != *n,
            IntMatcher::Set(IntSet::In(ns)) => ns.contains(&v),
        }
    }
}

impl fmt::Display for IntMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntMatcher::Eq(n) => write!(f, "{n}"),
            IntMatcher::Cmp(s) => write!(f, "{}", s.trim()),
            IntMatcher::Set(IntSet::Not(n)) => write!(f, "not {n}"),
            IntMatcher::Set(IntSet::In(ns)) => write!(f, "one of {ns:?}"),
        }
    }
}

/// A `requires.landlock_abi` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiRequirement {
    /// `"any"`: Landlock must be usable, any ABI.
    Any,
    /// `"none"`: the host must have no usable Landlock.
    None,
    /// `">=4"`, `"<4"`, `"==7"` …: Landlock usable with an ABI that compares so.
    Cmp(CmpOp, i64),
}

impl AbiRequirement {
    /// Parses `"any"`, `"none"` or a comparison such as `">=4"`.
    pub fn parse(s: &str) -> Result<AbiRequirement, String> {
        match s.trim() {
            "any" => Ok(AbiRequirement::Any),
            "none" => Ok(AbiRequirement::None),
            t => parse_cmp(t)
                .map(|(op, n)| AbiRequirement::Cmp(op, n))
                .map_err(|_| {
                    format!("invalid landlock_abi {s:?}: expected \"any\", \"none\" or a comparison such as \">=4\"")
                }),
        }
    }

    /// True when a host with this Landlock ABI (`None`: no usable Landlock)
    /// meets the requirement. Without Landlock only `"none"` holds.
    pub fn satisfied_by(self, abi: Option<u32>) -> bool {
        match (self, abi) {
            (AbiRequirement::None, abi) => abi.is_none(),
            (_, None) => false,
            (AbiRequirement::Any, Some(_)) => true,
            (AbiRequirement::Cmp(op, n), Some(abi)) => op.holds(i64::from(abi), n),
        }
    }
}

impl fmt::Display for AbiRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbiRequirement::Any => f.write_str("any"),
            AbiRequirement::None => f.write_str("none"),
            AbiRequirement::Cmp(op, n) => write!(f, "{}{n}", op.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_matchers_match_their_values() {
        assert!(IntMatcher::Eq(0).matches(0));
        assert!(!IntMatcher::Eq(0).matches(1));
        assert!(IntMatcher::Cmp(">=1".into()).matches(1));
        assert!(!IntMatcher::Cmp(">=1".into()).matches(0));
        assert!(IntMatcher::Cmp("< 3".into()).matches(2));
        assert!(IntMatcher::Cmp("!=0".into()).matches(-1));
        assert!(IntMatcher::Set(IntSet::Not(0)).matches(2));
        assert!(!IntMatcher::Set(IntSet::Not(0)).matches(0));
        assert!(IntMatcher::Set(IntSet::In(vec![1, 2])).matches(2));
        assert!(!IntMatcher::Set(IntSet::In(vec![1, 2])).matches(3));
    }

    #[test]
    fn malformed_comparisons_are_rejected_and_match_nothing() {
        for bad in ["1", "=>1", ">=", ">=x", "~1"] {
            let m = IntMatcher::Cmp(bad.into());
            assert!(m.check().is_err(), "{bad}");
            assert!(!m.matches(1) && !m.matches(0), "{bad}");
        }
        assert!(IntMatcher::Set(IntSet::In(vec![])).check().is_err());
    }

    #[test]
    fn abi_requirements_compare_and_handle_no_landlock() {
        let ge4 = AbiRequirement::parse(">=4").unwrap();
        assert!(ge4.satisfied_by(Some(7)));
        assert!(!ge4.satisfied_by(Some(2)));
        assert!(!ge4.satisfied_by(None));
        assert!(AbiRequirement::parse("none").unwrap().satisfied_by(None));
        assert!(!AbiRequirement::parse("none").unwrap().satisfied_by(Some(1)));
        assert!(AbiRequirement::parse("any").unwrap().satisfied_by(Some(1)));
        assert!(!AbiRequirement::parse("any").unwrap().satisfied_by(None));
        assert!(AbiRequirement::parse("4").is_err());
        assert!(AbiRequirement::parse("lots").is_err());
        assert_eq!(ge4.to_string(), ">=4");
    }
}
