//! A kernel without Landlock, made real for one process tree: a seccomp
//! filter that fails `landlock_create_ruleset`, `landlock_add_rule` and
//! `landlock_restrict_self` with ENOSYS (not built in) or EOPNOTSUPP
//! (disabled at boot). The filter is inherited across fork and exec, so a
//! backend started under it sees exactly what such a kernel shows.

use super::seccomp::Filter;
use super::SetupError;
use crate::corpus::case::SimulatedLandlock;

/// A prepared no-Landlock filter; [`NoLandlock::install`] it in a child
/// (e.g. from `CommandExt::pre_exec`).
#[derive(Debug, Clone)]
pub struct NoLandlock {
    filter: Filter,
}

impl NoLandlock {
    /// Builds the filter (allocates; do it before fork).
    pub fn new(kind: SimulatedLandlock) -> Result<NoLandlock, SetupError> {
        let errno = match kind {
            SimulatedLandlock::Enosys => libc::ENOSYS,
            SimulatedLandlock::Eopnotsupp => libc::EOPNOTSUPP,
        };
        Ok(NoLandlock {
            filter: Filter::no_landlock(errno)?,
        })
    }

    /// Installs the filter on the calling thread (and so on everything it
    /// execs or forks afterwards).
    ///
    /// # Safety
    /// Async-signal-safe (no allocation): fit for `pre_exec`. Irreversible
    /// for the calling thread; never call it in the harness itself.
    pub unsafe fn install(&self) -> std::io::Result<()> {
        // SAFETY: forwarded contract; see `Filter::install`.
        unsafe { self.filter.install() }
    }
}
