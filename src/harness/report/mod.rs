//! Reports, all built from the same [`CaseResult`]s: live progress for
//! people ([`live`]), the summary table ([`summary`]), a JSON file for
//! machines ([`json`], documented in docs/json-report.md) and JUnit XML for
//! CI ([`junit`]).

pub mod json;
pub mod junit;
pub mod live;
pub mod summary;

use crate::driver::Hello;
use crate::kernel::KernelFacts;

/// What every report says about the run as a whole.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The driver as selected (`reference`, `sandlock`, or a command line).
    pub driver: String,
    /// The backend's handshake.
    pub backend: Hello,
    /// The kernel the run happened on.
    pub kernel: KernelFacts,
    /// The signal that interrupted the run (SIGINT, SIGTERM, SIGHUP), if
    /// one did: cases it stopped or kept from running are errors.
    pub interrupted: Option<i32>,
    /// What a reader must know to read the verdicts right (e.g. that a
    /// process limit is counted over the whole uid); one line each.
    pub notes: Vec<String>,
}

/// Whether to colour output: only on a terminal, and never when `NO_COLOR`
/// is set to a non-empty value (https://no-color.org).
pub fn use_color(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
