//! Upper bounds on what a case may make the harness create: a generated
//! script body is built in memory, setup files are written to disk, so a
//! case asking for `64G` must be refused when it is loaded, with its
//! position, rather than abort the harness or fill the disk.

use super::case::Case;
use super::locate::{Index, Pos};
use crate::policy::Size;

/// Default [`CaseLimits::script_bytes`]: 64 MiB (16× the largest case
/// shipped, a 4 MiB script).
pub const DEFAULT_SCRIPT_BYTES: u64 = 64 << 20;
/// Default [`CaseLimits::setup_bytes`]: 256 MiB.
pub const DEFAULT_SETUP_BYTES: u64 = 256 << 20;

/// How large a case's generated content may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseLimits {
    /// A generated script body (`run.script.generated.size`), in bytes.
    pub script_bytes: u64,
    /// All of a case's setup files together (`setup.files[].size` and
    /// `content`), in bytes.
    pub setup_bytes: u64,
}

impl Default for CaseLimits {
    fn default() -> Self {
        CaseLimits {
            script_bytes: DEFAULT_SCRIPT_BYTES,
            setup_bytes: DEFAULT_SETUP_BYTES,
        }
    }
}

/// Every size in `case` past `limits`, at the position of its value.
pub fn check(case: &Case, ix: &Index, limits: &CaseLimits) -> Vec<(Pos, String)> {
    let mut out = Vec::new();
    let at = |path: &str| ix.value(path).unwrap_or(Pos::START);
    if let Some(g) = case.run.script.as_ref().and_then(|s| s.generated.as_ref()) {
        if g.size.0 > limits.script_bytes {
            out.push((
                at("run.script.generated.size"),
                format!(
                    "run.script.generated.size {} is larger than the limit of {} for a \
                     generated script (raise it with --max-script-size)",
                    g.size,
                    Size(limits.script_bytes)
                ),
            ));
        }
    }
    let mut total: u64 = 0;
    for (i, f) in case.setup.files.iter().enumerate() {
        let bytes = f
            .size
            .map_or(0, |s| s.0)
            .saturating_add(f.content.as_ref().map_or(0, |c| c.len() as u64));
        total = total.saturating_add(bytes);
        if total > limits.setup_bytes {
            let field = if f.size.is_some() { "size" } else { "content" };
            out.push((
                at(&format!("setup.files[{i}].{field}")),
                format!(
                    "setup files add up to more than the limit of {} for one case, at \
                     setup.files[{i}] (raise it with --max-setup-size)",
                    Size(limits.setup_bytes)
                ),
            ));
            break;
        }
    }
    out
}
