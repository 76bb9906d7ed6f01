//! Reports across runs: the backend × case matrix (HTML, Markdown, text),
//! the comparison of two runs, and expectation files written from a run.
//!
//! Everything here reads the JSON files `sandspec run --json` writes
//! ([`input`]), so a matrix can be built from runs made on different
//! machines or days.

pub mod diff;
pub mod expectations;
pub mod html;
pub mod input;
pub mod markdown;
pub mod matrix;
pub mod text;
