//! A few hand-assembled BPF instructions that go in front of the program
//! `seccompiler` builds, for what seccompiler cannot say: an errno other
//! than the filter's one (`clone3` → `ENOSYS`), a range of syscall numbers
//! (the x32 ABI), and constants patched per run (the supervisor's and the
//! caller's pids, which exist only once the run starts).
//!
//! seccompiler's program starts with its architecture check (load the arch,
//! compare, kill on a mismatch) and then loads the syscall number itself;
//! the prefix is inserted right after the architecture check, so it runs
//! only for the native architecture and falls through into the body with
//! nothing assumed about the accumulator. All jumps are forward and local
//! to the prefix, so the body's own relative jumps stay valid.

use seccompiler::sock_filter;

// BPF opcodes (linux/bpf_common.h).
/// BPF_LD | BPF_W | BPF_ABS.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JGE_K: u16 = 0x05 | 0x30;
const BPF_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;

/// `struct seccomp_data` offsets: nr, then arch, ip, args[6] (u64 each).
const OFF_NR: u32 = 0;
const fn off_arg_low(i: u32) -> u32 {
    // The low 32 bits of an argument, on a little-endian machine.
    16 + 8 * i
}

const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

/// The x32 ABI marks its syscall numbers with this bit.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A constant of the program that is only known when a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// The pid of the run's supervisor.
    Supervisor,
    /// The pid of the process that called `Sandbox::run`.
    Caller,
}

/// An instruction whose `k` is patched per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index of the instruction in the whole program.
    pub index: usize,
    /// What goes into its `k`.
    pub kind: SlotKind,
}

/// Placeholder for a slot before it is patched: no pid is this large.
const PLACEHOLDER: u32 = 0x7fff_fff0;

#[derive(Clone, Copy)]
enum Target {
    Next,
    Label(usize),
}

struct Insn {
    code: u16,
    k: u32,
    jt: Target,
    jf: Target,
    slot: Option<SlotKind>,
}

/// Builds the prefix. Labels are resolved by [`Prefix::finish`].
pub struct Prefix {
    code: Vec<Insn>,
    labels: Vec<Option<usize>>,
    eperm: usize,
    enosys: usize,
    end: usize,
}

impl Prefix {
    pub fn new() -> Prefix {
        let mut p = Prefix {
            code: Vec::new(),
            labels: Vec::new(),
            eperm: 0,
            enosys: 0,
            end: 0,
        };
        p.eperm = p.label();
        p.enosys = p.label();
        p.end = p.label();
        p
    }

    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
    }

    fn push(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.code.push(Insn {
            code,
            k,
            jt,
            jf,
            slot: None,
        });
    }

    fn load_nr(&mut self) {
        self.push(BPF_LD_W_ABS, OFF_NR, Target::Next, Target::Next);
    }

    /// Any syscall number with the x32 bit fails with EPERM (the kernel
    /// may have the x32 ABI on, and the body matches exact numbers only).
    pub fn deny_x32(&mut self) {
        self.load_nr();
        let eperm = self.eperm;
        self.push(
            BPF_JGE_K,
            X32_SYSCALL_BIT,
            Target::Label(eperm),
            Target::Next,
        );
    }

    /// `nr` fails with ENOSYS, as on a kernel without it (so that libc
    /// falls back to an older call the body can inspect).
    pub fn enosys(&mut self, nr: i64) {
        self.load_nr();
        let enosys = self.enosys;
        self.push(BPF_JEQ_K, nr as u32, Target::Label(enosys), Target::Next);
    }

    /// Each of `syscalls` fails with EPERM when its first argument (a pid,
    /// as a 32-bit value) is negative (a process group, or -1: every
    /// process), or is the supervisor's or the caller's pid.
    pub fn deny_signals_outside(&mut self, syscalls: &[i64]) {
        let check = self.label();
        self.load_nr();
        for nr in syscalls {
            self.push(BPF_JEQ_K, *nr as u32, Target::Label(check), Target::Next);
        }
        let end = self.end;
        self.push(BPF_JMP_JA, 0, Target::Label(end), Target::Next);
        self.bind(check);
        self.push(BPF_LD_W_ABS, off_arg_low(0), Target::Next, Target::Next);
        let eperm = self.eperm;
        self.push(BPF_JSET_K, 0x8000_0000, Target::Label(eperm), Target::Next);
        for kind in [SlotKind::Supervisor, SlotKind::Caller] {
            self.code.push(Insn {
                code: BPF_JEQ_K,
                k: PLACEHOLDER,
                jt: Target::Label(eperm),
                jf: Target::Next,
                slot: Some(kind),
            });
        }
        self.push(BPF_JMP_JA, 0, Target::Label(end), Target::Next);
    }

    /// The instructions, with `base` the index the first one will have in
    /// the whole program, and the slots to patch.
    pub fn finish(mut self, base: usize) -> (Vec<sock_filter>, Vec<Slot>) {
        let end = self.end;
        self.push(BPF_JMP_JA, 0, Target::Label(end), Target::Next);
        let eperm = self.eperm;
        self.bind(eperm);
        self.push(
            BPF_RET_K,
            SECCOMP_RET_ERRNO | libc::EPERM as u32,
            Target::Next,
            Target::Next,
        );
        let enosys = self.enosys;
        self.bind(enosys);
        self.push(
            BPF_RET_K,
            SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
            Target::Next,
            Target::Next,
        );
        self.bind(end);
        let labels: Vec<usize> = self
            .labels
            .iter()
            .map(|l| l.expect("every label of the prefix is bound"))
            .collect();
        let mut out = Vec::with_capacity(self.code.len());
        let mut slots = Vec::new();
        for (i, insn) in self.code.iter().enumerate() {
            // Jumps are relative to the next instruction, forward only.
            let rel = |t: Target| -> u32 {
                match t {
                    Target::Next => 0,
                    Target::Label(l) => {
                        let to = labels[l];
                        debug_assert!(to > i, "BPF jumps go forward");
                        (to - i - 1) as u32
                    }
                }
            };
            let (jt, jf, k) = if insn.code == BPF_JMP_JA {
                (0, 0, rel(insn.jt))
            } else {
                let jt = rel(insn.jt);
                let jf = rel(insn.jf);
                debug_assert!(jt < 256 && jf < 256, "short jumps only");
                (jt as u8, jf as u8, insn.k)
            };
            if let Some(kind) = insn.slot {
                slots.push(Slot {
                    index: base + i,
                    kind,
                });
            }
            out.push(sock_filter {
                code: insn.code,
                jt,
                jf,
                k,
            });
        }
        (out, slots)
    }
}
