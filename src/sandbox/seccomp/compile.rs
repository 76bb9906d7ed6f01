//! Rules to a BPF program, laid out for the kernel's cost of running it.
//!
//! The program:
//! 1. the architecture check: a syscall made through another ABI (i386
//!    `int 0x80` from a 64-bit process) kills the process;
//! 2. x32 syscall numbers (the x32 bit set) fail with EPERM (the sandbox's
//!    filter; fault-injection filters leave them alone, [`Head`]);
//! 3. a balanced binary search on the syscall number (`JGE` nodes, leaves
//!    of at most [`LEAF`] `JEQ`s): a syscall without rules is allowed after
//!    about log2(rules / 4) + 4 instructions, whatever it is;
//! 4. one block per distinct list of checks: the checks in order, the
//!    first that holds returns its errno, none returns allow.
//!
//! Why not a linear chain (what seccompiler builds): the kernel runs the
//! filter once for every syscall number when it is installed, to find the
//! ones always allowed (`seccomp_cache_prepare`), and then runs it on every
//! syscall the cache cannot decide. With ~100 rules a linear chain walks
//! most of its ~400 instructions for most numbers; installing it in the
//! child cost 833 µs against 396 µs for a 9-instruction filter (300
//! interleaved forks). The search walks about 13 on average (5800–6000
//! for the 471 numbers 0–470), at most 33.

use libc::sock_filter;

use super::asm::{Asm, AsmError, Label, Slot, SlotKind, To, JEQ_K, JGE_K, JSET_K};
use super::rules::{Check, Cmp, Cond, Rules};

/// `struct seccomp_data` offsets: nr, then arch, ip, args[6] (u64 each).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// The low 32 bits of argument `i`, on a little-endian machine.
const fn off_arg_low(i: u8) -> u32 {
    16 + 8 * i as u32
}
const fn off_arg_high(i: u8) -> u32 {
    off_arg_low(i) + 4
}

pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const fn ret_errno(e: i32) -> u32 {
    0x0005_0000 | (e as u32 & 0xffff)
}

/// The x32 ABI marks its syscall numbers with this bit.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `AUDIT_ARCH_*` of this build's architecture (linux/audit.h: the ELF
/// machine, 64-bit, little-endian). None elsewhere (big-endian included:
/// the argument offsets assume little-endian), which fails closed.
#[cfg(all(target_arch = "x86_64", target_endian = "little"))]
pub const AUDIT_ARCH: Option<u32> = Some(62 | 0x8000_0000 | 0x4000_0000);
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
pub const AUDIT_ARCH: Option<u32> = Some(183 | 0x8000_0000 | 0x4000_0000);
#[cfg(all(target_arch = "riscv64", target_endian = "little"))]
pub const AUDIT_ARCH: Option<u32> = Some(243 | 0x8000_0000 | 0x4000_0000);
#[cfg(not(all(
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ),
    target_endian = "little"
)))]
pub const AUDIT_ARCH: Option<u32> = None;

/// Most syscalls a leaf of the search compares one by one.
pub const LEAF: usize = 4;

/// How the search reaches the right half of a node and a syscall's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Conditional jumps straight there: one instruction a node and a key
    /// (the whole program must span at most 255, as ours usually does).
    Short,
    /// Through a `ja`: any length.
    Long,
}

/// What the program checks before the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The `AUDIT_ARCH_*` value allowed; any other kills the process.
    pub arch: u32,
    /// Syscall numbers with the x32 bit fail with EPERM (the sandbox); off
    /// for fault-injection filters, which change nothing but their rules.
    pub deny_x32: bool,
}

/// The program for `rules`. Laid out with short jumps when they reach,
/// with `ja`s otherwise.
pub fn program(rules: &Rules, head: Head) -> Result<(Vec<sock_filter>, Vec<Slot>), String> {
    match layout(rules, head, Reach::Short) {
        Err(AsmError::TooFar(_)) => layout(rules, head, Reach::Long),
        other => other,
    }
    .map_err(|e| e.to_string())
}

fn layout(
    rules: &Rules,
    head: Head,
    reach: Reach,
) -> Result<(Vec<sock_filter>, Vec<Slot>), AsmError> {
    let mut a = Asm::new();
    // 1. Architecture.
    a.load(OFF_ARCH);
    let native = a.label();
    a.jump_if(JEQ_K, head.arch, To::L(native), To::Next);
    a.ret(RET_KILL_PROCESS);
    a.bind(native);
    // 2. x32 numbers.
    a.load(OFF_NR);
    if head.deny_x32 {
        let not_x32 = a.label();
        a.jump_if(JGE_K, X32_SYSCALL_BIT, To::Next, To::L(not_x32));
        a.ret(ret_errno(libc::EPERM));
        a.bind(not_x32);
    }
    // 3. The search, on A = nr. Syscalls with the same checks share one
    //    block (every plainly refused syscall ends at one `ret`).
    let mut blocks: Vec<(&Vec<Check>, Label)> = Vec::new();
    let mut keys = Vec::with_capacity(rules.len());
    for (nr, checks) in rules {
        if checks.is_empty() {
            continue;
        }
        let nr = u32::try_from(*nr)
            .ok()
            .filter(|n| *n < X32_SYSCALL_BIT)
            .ok_or_else(|| AsmError::Layout(format!("syscall number {nr} out of range")))?;
        let label = match blocks.iter().find(|(c, _)| *c == checks) {
            Some((_, l)) => *l,
            None => {
                let l = a.label();
                blocks.push((checks, l));
                l
            }
        };
        keys.push((nr, label));
    }
    let allow = a.label();
    search(&mut a, &keys, reach, allow);
    if reach == Reach::Short {
        // The long layout's leaves return allow themselves.
        a.bind(allow);
        a.ret(RET_ALLOW);
    }
    // 4. The blocks.
    for (checks, label) in &blocks {
        a.bind(*label);
        block(&mut a, checks);
    }
    a.finish()
}

/// Binary search over sorted `keys`, A holding the syscall number: jumps
/// to the key's block, or returns allow.
fn search(a: &mut Asm, keys: &[(u32, Label)], reach: Reach, allow: Label) {
    if keys.len() <= LEAF {
        for (i, (nr, block)) in keys.iter().enumerate() {
            let last = i + 1 == keys.len();
            match reach {
                // The last miss goes to the one shared `ret allow`.
                Reach::Short if last => a.jump_if(JEQ_K, *nr, To::L(*block), To::L(allow)),
                Reach::Short => a.jump_if(JEQ_K, *nr, To::L(*block), To::Next),
                Reach::Long => {
                    let next = a.label();
                    a.jump_if(JEQ_K, *nr, To::Next, To::L(next));
                    a.ja(*block);
                    a.bind(next);
                }
            }
        }
        if keys.is_empty() || reach == Reach::Long {
            a.ret(RET_ALLOW);
        }
        return;
    }
    let mid = keys.len() / 2;
    let right = a.label();
    match reach {
        Reach::Short => a.jump_if(JGE_K, keys[mid].0, To::L(right), To::Next),
        Reach::Long => {
            let left = a.label();
            a.jump_if(JGE_K, keys[mid].0, To::Next, To::L(left));
            a.ja(right);
            a.bind(left);
        }
    }
    search(a, &keys[..mid], reach, allow);
    a.bind(right);
    search(a, &keys[mid..], reach, allow);
}

/// One syscall's checks, in order; falls to allow.
fn block(a: &mut Asm, checks: &[Check]) {
    for check in checks {
        match check {
            Check::Always(errno) => {
                // Nothing after it can be reached.
                a.ret(ret_errno(*errno));
                return;
            }
            Check::When(conds) => {
                let no = a.label();
                for c in conds {
                    cond(a, c, no);
                }
                a.ret(ret_errno(libc::EPERM));
                a.bind(no);
            }
            Check::SignalTarget => {
                // The first argument, as the kernel reads a pid_t: negative
                // is a process group or -1 (every process).
                let (yes, no) = (a.label(), a.label());
                a.load(off_arg_low(0));
                a.jump_if(JSET_K, 0x8000_0000, To::L(yes), To::Next);
                a.jeq_slot(SlotKind::Supervisor, To::L(yes), To::Next);
                a.jeq_slot(SlotKind::Caller, To::L(yes), To::L(no));
                a.bind(yes);
                a.ret(ret_errno(libc::EPERM));
                a.bind(no);
            }
        }
    }
    a.ret(RET_ALLOW);
}

/// Falls through when `c` holds, jumps to `no` when it does not.
fn cond(a: &mut Asm, c: &Cond, no: Label) {
    let (lo, hi) = (c.value as u32, (c.value >> 32) as u32);
    let mask = match c.cmp {
        Cmp::MaskedEq(m) => Some(m),
        Cmp::Eq | Cmp::Ne => None,
    };
    if !c.wide {
        a.load(off_arg_low(c.arg));
        if let Some(m) = mask {
            a.and(m as u32);
        }
        match c.cmp {
            Cmp::Eq | Cmp::MaskedEq(_) => a.jump_if(JEQ_K, lo, To::Next, To::L(no)),
            Cmp::Ne => a.jump_if(JEQ_K, lo, To::L(no), To::Next),
        }
        return;
    }
    // All 64 bits: equal when both halves are.
    let holds = a.label();
    a.load(off_arg_low(c.arg));
    if let Some(m) = mask {
        a.and(m as u32);
    }
    let low_differs = match c.cmp {
        Cmp::Eq | Cmp::MaskedEq(_) => no,
        Cmp::Ne => holds,
    };
    a.jump_if(JEQ_K, lo, To::Next, To::L(low_differs));
    a.load(off_arg_high(c.arg));
    if let Some(m) = mask {
        a.and((m >> 32) as u32);
    }
    match c.cmp {
        Cmp::Eq | Cmp::MaskedEq(_) => a.jump_if(JEQ_K, hi, To::Next, To::L(no)),
        Cmp::Ne => a.jump_if(JEQ_K, hi, To::L(no), To::Next),
    }
    a.bind(holds);
}
