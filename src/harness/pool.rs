//! Running many cases in parallel: `jobs` workers, each with its own driver
//! instance, pulling cases from a shared list. Results are reported as they
//! finish and returned in corpus order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::expectations::{Expectations, HostConditions};
use super::interrupt;
use super::runner::Harness;
use super::slot::DriverSlot;
use super::status::CaseResult;
use crate::corpus::LoadedCase;
use crate::driver::DriverFactory;

impl Harness {
    /// Runs `cases` on `jobs` workers through drivers made by `factory`;
    /// `expectations` turn listed failures into xfail (and listed passes
    /// into xpass); `on_result` sees each result as it finishes.
    pub fn run_all(
        &self,
        cases: &[LoadedCase],
        factory: &dyn DriverFactory,
        jobs: usize,
        expectations: Option<&Expectations>,
        on_result: &mut dyn FnMut(&CaseResult),
    ) -> Vec<CaseResult> {
        let jobs = jobs.clamp(1, cases.len().max(1));
        let host = HostConditions::from_host(self.host());
        let next = AtomicUsize::new(0);
        let mut results: Vec<Option<CaseResult>> = vec![None; cases.len()];
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel::<(usize, CaseResult)>();
            for w in 0..jobs {
                let tx = tx.clone();
                let next = &next;
                std::thread::Builder::new()
                    .name(format!("sandspec-worker-{w}"))
                    .spawn_scoped(s, move || {
                        let mut slot = DriverSlot::new(factory);
                        loop {
                            // An interrupt stops the dispatch; the cases
                            // already running are torn down by their drivers.
                            if interrupt::requested().is_some() {
                                break;
                            }
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(lc) = cases.get(i) else { break };
                            let r = self.run_case(lc, &mut slot);
                            if tx.send((i, r)).is_err() {
                                break;
                            }
                        }
                    })
                    .map_err(|e| eprintln!("sandspec: failed to start a worker thread: {e}"))
                    .ok();
            }
            drop(tx);
            for (i, mut r) in rx {
                if let Some(x) = expectations {
                    x.apply(&mut r, &host);
                }
                on_result(&r);
                results[i] = Some(r);
            }
        });
        // A case no worker reached (every worker thread failed to start)
        // is an error, never silently missing.
        results
            .into_iter()
            .zip(cases)
            .map(|(r, lc)| {
                r.unwrap_or_else(|| {
                    let mut r = CaseResult::new(lc);
                    r.status = super::status::Status::Error;
                    r.reason = Some(match interrupt::requested() {
                        Some(sig) => interrupt::not_run(sig),
                        None => "no worker ran this case".into(),
                    });
                    if let Some(x) = expectations {
                        x.apply(&mut r, &host);
                    }
                    on_result(&r);
                    r
                })
            })
            .collect()
    }
}
