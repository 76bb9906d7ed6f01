//! Reusing a built [`Sandbox`] while requests repeat a policy.
//!
//! A `Sandbox` is built to run many commands: its Landlock ruleset, seccomp
//! program, capability plan and environment belong to the policy, not to a
//! run, and building them is most of what a spawn costs beyond fork and
//! exec. A driver that gets one request at a time keeps the last one it
//! built and uses it again for an equal policy (an agent running many
//! commands under one policy; a benchmark).
//!
//! What a reused sandbox decides at build time stays decided: an
//! allowlisted path that was missing then stays filtered (refused) even if
//! a run creates it, and a rule names the inode the path had then, not
//! one renamed into its place later. Both only ever refuse more, never
//! grant more; a fresh policy (every corpus case has its own scratch
//! directory) builds afresh.

use std::sync::Arc;

use super::{Mutant, Sandbox, SetupError};
use crate::policy::Policy;

/// The last sandbox built, with what it was built from.
#[derive(Debug, Default)]
pub struct LastBuilt {
    last: Option<(Policy, Option<Mutant>, Arc<Sandbox>)>,
}

impl LastBuilt {
    /// The sandbox for `policy` (as `mutant`, if any): the last one if it
    /// was built from an equal policy, else a new one, kept for next time.
    pub fn get(
        &mut self,
        policy: &Policy,
        mutant: Option<Mutant>,
    ) -> Result<Arc<Sandbox>, SetupError> {
        if let Some((p, m, sb)) = &self.last {
            if p == policy && *m == mutant {
                return Ok(Arc::clone(sb));
            }
        }
        // A failed build forgets the last one too: nothing stale is kept.
        self.last = None;
        let sb = Arc::new(match mutant {
            None => Sandbox::new(policy)?,
            Some(m) => Sandbox::new_mutant(policy, m)?,
        });
        self.last = Some((policy.clone(), mutant, Arc::clone(&sb)));
        Ok(sb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Command;

    fn policy() -> Policy {
        Policy {
            read: vec!["/usr".into(), "/lib".into(), "/lib64".into()],
            exec: vec!["/usr".into(), "/lib".into(), "/lib64".into()],
            ..Default::default()
        }
    }

    #[test]
    fn an_equal_policy_reuses_the_sandbox_and_another_builds_anew() {
        if crate::kernel::landlock().abi().is_none() {
            let mut l = LastBuilt::default();
            assert!(l.get(&policy(), None).is_err(), "no Landlock: refused");
            return;
        }
        let mut l = LastBuilt::default();
        let a = l.get(&policy(), None).unwrap();
        let b = l.get(&policy(), None).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let mut other = policy();
        other.read.push("/etc".into());
        let c = l.get(&other, None).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        let d = l.get(&other, Some(Mutant::EnvClear)).unwrap();
        assert!(!Arc::ptr_eq(&c, &d));
        assert_eq!(d.mutant(), Some(Mutant::EnvClear));
        // A reused sandbox still runs (and runs again).
        for _ in 0..2 {
            let out = b.run(&Command::argv(["/bin/true"]));
            assert_eq!(
                out.outcome,
                crate::policy::Outcome::Exited { code: 0 },
                "{out:?}"
            );
        }
    }
}
