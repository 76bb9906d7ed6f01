//! A worker's driver instance, started lazily and restarted after a fault.

use std::time::Duration;

use crate::driver::{Attach, Driver, DriverError, DriverFactory, Hello, RunRequest};
use crate::oracle::tracker::{own_child, OwnChild};
use crate::policy::RunOutput;

/// One worker's driver. A fault (anything but the driver's own `error`
/// answer) discards the instance; the next case starts a fresh one, so one
/// broken exchange costs one case, not the run.
pub struct DriverSlot<'f> {
    factory: &'f dyn DriverFactory,
    live: Option<(Box<dyn Driver>, Hello)>,
    /// The live instance's process, registered as the harness's own.
    own: Option<OwnChild>,
    seq: u64,
    restarts: u64,
}

impl<'f> DriverSlot<'f> {
    /// An empty slot; nothing is started until needed.
    pub fn new(factory: &'f dyn DriverFactory) -> Self {
        DriverSlot {
            factory,
            live: None,
            own: None,
            seq: 0,
            restarts: 0,
        }
    }

    /// The factory.
    pub fn factory(&self) -> &'f dyn DriverFactory {
        self.factory
    }

    /// The live instance's handshake, starting one if needed.
    pub fn hello(&mut self) -> Result<&Hello, DriverError> {
        Ok(&self.live()?.1)
    }

    fn live(&mut self) -> Result<&mut (Box<dyn Driver>, Hello), DriverError> {
        if self.live.is_none() {
            let mut d = self.factory.spawn(None)?;
            self.own = d.pid().map(own_child);
            let h = d.hello()?;
            self.live = Some((d, h));
        }
        self.live.as_mut().ok_or_else(|| DriverError::Start {
            driver: self.factory.name().to_string(),
            why: "no instance after starting one".into(),
        })
    }

    /// The next request sequence number.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Runs `req` on the live instance; a fault discards it.
    pub fn run(&mut self, req: &RunRequest, watchdog: Duration) -> Result<RunOutput, DriverError> {
        self.run_attached(req, &Attach::default(), watchdog)
    }

    /// The live instance's process (external drivers), starting one if
    /// needed.
    pub fn pid(&mut self) -> Result<Option<u32>, DriverError> {
        Ok(self.live()?.0.pid())
    }

    /// Runs `req` with files attached on the live instance; a fault
    /// discards it.
    pub fn run_attached(
        &mut self,
        req: &RunRequest,
        attach: &Attach<'_>,
        watchdog: Duration,
    ) -> Result<RunOutput, DriverError> {
        let r = self.live()?.0.run_attached(req, attach, watchdog);
        if let Err(e) = &r {
            if !matches!(e, DriverError::Reported { .. }) {
                self.discard();
            }
        }
        r
    }

    /// Stops the live instance (if any); the next use starts a new one.
    pub fn discard(&mut self) {
        let gone = self.live.take();
        let had = gone.is_some();
        // Killed and reaped first, then no longer the harness's own.
        drop(gone);
        self.own = None;
        if had {
            self.restarts += 1;
        }
    }

    /// How many instances were discarded after a fault.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}
