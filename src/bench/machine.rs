//! The machine a result was measured on: kernel facts, CPUs, load. A
//! latency figure without these cannot be compared with another.

use serde::Serialize;

use crate::kernel::{self, KernelFacts};

/// Facts recorded beside every bench result.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Kernel release, Landlock support, seccomp, user namespaces, euid.
    pub kernel: KernelFacts,
    /// The Landlock ABI as a number (absent without Landlock).
    pub landlock_abi: Option<u32>,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the bench started.
    pub load_before: Option<[f64; 3]>,
    /// The same when it ended.
    pub load_after: Option<[f64; 3]>,
}

impl Machine {
    /// Probes the machine now (the load at the end is filled by
    /// [`Machine::finish`]).
    pub fn probe() -> Machine {
        let kernel = kernel::probe();
        Machine {
            landlock_abi: kernel.landlock.abi(),
            kernel,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_before: load_average(),
            load_after: None,
        }
    }

    /// Records the load at the end of the bench.
    pub fn finish(&mut self) {
        self.load_after = load_average();
    }

    /// One line for the terminal: kernel, Landlock, CPUs, load.
    pub fn describe(&self) -> String {
        let load = |l: Option<[f64; 3]>| l.map_or("?".to_string(), |l| format!("{:.2}", l[0]));
        format!(
            "kernel {} ({}), Landlock {}, {} CPUs, load {} -> {}",
            self.kernel.release,
            self.kernel.machine,
            self.kernel.landlock,
            self.cpus,
            load(self.load_before),
            load(self.load_after),
        )
    }
}

/// The three load averages of `/proc/loadavg`.
pub fn load_average() -> Option<[f64; 3]> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    Some([it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg_lines_parse_and_garbage_does_not() {
        assert_eq!(
            parse_loadavg("4.83 4.77 4.92 7/151 8161\n"),
            Some([4.83, 4.77, 4.92])
        );
        assert_eq!(parse_loadavg("4.83 x"), None);
        assert_eq!(parse_loadavg(""), None);
    }
}
