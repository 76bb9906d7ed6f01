//! The conformance corpus: case format ([`case`]), loading and strict
//! validation.

pub mod case;
