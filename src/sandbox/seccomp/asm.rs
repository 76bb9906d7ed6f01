//! A small classic-BPF assembler: instructions with forward labels,
//! resolved into relative jumps by [`Asm::finish`], and constants patched
//! per run ([`Slot`]: the supervisor's and the caller's pids exist only
//! once a run starts).
//!
//! Conditional jumps reach at most 255 instructions ahead; a longer one is
//! an error at [`Asm::finish`], never a silently wrong program. `ja`
//! reaches anywhere ahead. Every jump goes forward (the kernel refuses
//! backward jumps and loops).

use libc::sock_filter;

// BPF opcodes (linux/bpf_common.h).
/// BPF_LD | BPF_W | BPF_ABS.
pub const LD_W_ABS: u16 = 0x20;
/// BPF_ALU | BPF_AND | BPF_K.
pub const AND_K: u16 = 0x54;
/// BPF_JMP | BPF_JA.
pub const JA: u16 = 0x05;
/// BPF_JMP | BPF_JEQ | BPF_K.
pub const JEQ_K: u16 = 0x15;
/// BPF_JMP | BPF_JGE | BPF_K.
pub const JGE_K: u16 = 0x35;
/// BPF_JMP | BPF_JSET | BPF_K.
pub const JSET_K: u16 = 0x45;
/// BPF_RET | BPF_K.
pub const RET_K: u16 = 0x06;

/// The longest classic BPF program the kernel loads (linux/bpf_common.h).
pub const BPF_MAXINSNS: usize = 4096;

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
pub const PLACEHOLDER: u32 = 0x7fff_fff0;

/// A place in the program, bound once with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Where a jump goes.
#[derive(Debug, Clone, Copy)]
pub enum To {
    /// The next instruction.
    Next,
    /// A label.
    L(Label),
}

struct Insn {
    code: u16,
    k: u32,
    jt: To,
    jf: To,
    slot: Option<SlotKind>,
}

/// Why a program cannot be assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsmError {
    /// A conditional jump reaches further than 255 instructions: the same
    /// program can be laid out with `ja`s instead.
    TooFar(String),
    /// A bug in the program's layout (an unbound label, a backward jump,
    /// too many instructions).
    Layout(String),
}

impl std::fmt::Display for AsmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsmError::TooFar(m) | AsmError::Layout(m) => f.write_str(m),
        }
    }
}

/// The program being assembled.
#[derive(Default)]
pub struct Asm {
    code: Vec<Insn>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    /// A new, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `l` to the next instruction.
    pub fn bind(&mut self, l: Label) {
        debug_assert!(self.labels[l.0].is_none(), "a label is bound once");
        self.labels[l.0] = Some(self.code.len());
    }

    fn push(&mut self, code: u16, k: u32, jt: To, jf: To, slot: Option<SlotKind>) {
        self.code.push(Insn {
            code,
            k,
            jt,
            jf,
            slot,
        });
    }

    /// `A = seccomp_data[off]` (32 bits).
    pub fn load(&mut self, off: u32) {
        self.push(LD_W_ABS, off, To::Next, To::Next, None);
    }

    /// `A &= k`.
    pub fn and(&mut self, k: u32) {
        self.push(AND_K, k, To::Next, To::Next, None);
    }

    /// A conditional jump (`JEQ_K`, `JGE_K` or `JSET_K`).
    pub fn jump_if(&mut self, code: u16, k: u32, jt: To, jf: To) {
        self.push(code, k, jt, jf, None);
    }

    /// `JEQ` against a constant patched per run.
    pub fn jeq_slot(&mut self, kind: SlotKind, jt: To, jf: To) {
        self.push(JEQ_K, PLACEHOLDER, jt, jf, Some(kind));
    }

    /// An unconditional jump.
    pub fn ja(&mut self, to: Label) {
        self.push(JA, 0, To::L(to), To::Next, None);
    }

    /// Return `k` (a seccomp action).
    pub fn ret(&mut self, k: u32) {
        self.push(RET_K, k, To::Next, To::Next, None);
    }

    /// The instructions and the slots to patch; an error names a label
    /// never bound or a conditional jump longer than 255.
    pub fn finish(self) -> Result<(Vec<sock_filter>, Vec<Slot>), AsmError> {
        let mut out = Vec::with_capacity(self.code.len());
        let mut slots = Vec::new();
        for (i, insn) in self.code.iter().enumerate() {
            // Jumps are relative to the next instruction, forward only.
            let rel = |t: To| -> Result<u32, AsmError> {
                match t {
                    To::Next => Ok(0),
                    To::L(l) => {
                        let to = self.labels[l.0].ok_or_else(|| {
                            AsmError::Layout(format!("label {} is never bound", l.0))
                        })?;
                        if to <= i {
                            return Err(AsmError::Layout(format!(
                                "instruction {i} jumps back to {to}"
                            )));
                        }
                        Ok((to - i - 1) as u32)
                    }
                }
            };
            let (jt, jf, k) = if insn.code == JA {
                (0, 0, rel(insn.jt)?)
            } else {
                let (jt, jf) = (rel(insn.jt)?, rel(insn.jf)?);
                let short = |d: u32| {
                    u8::try_from(d).map_err(|_| {
                        AsmError::TooFar(format!("instruction {i} jumps {d} ahead, more than 255"))
                    })
                };
                (short(jt)?, short(jf)?, insn.k)
            };
            if let Some(kind) = insn.slot {
                slots.push(Slot { index: i, kind });
            }
            out.push(sock_filter {
                code: insn.code,
                jt,
                jf,
                k,
            });
        }
        if out.len() > BPF_MAXINSNS {
            return Err(AsmError::Layout(format!(
                "{} instructions, more than the kernel's {BPF_MAXINSNS}",
                out.len()
            )));
        }
        Ok((out, slots))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_resolve_forward_and_long_conditional_jumps_are_errors() {
        let mut a = Asm::new();
        let end = a.label();
        a.load(0);
        a.jump_if(JEQ_K, 7, To::L(end), To::Next);
        a.ja(end);
        a.jeq_slot(SlotKind::Caller, To::Next, To::L(end));
        a.bind(end);
        a.ret(0);
        let (p, slots) = a.finish().unwrap();
        assert_eq!((p[1].jt, p[1].jf), (2, 0));
        assert_eq!(p[2].k, 1);
        assert_eq!((p[3].jt, p[3].jf, p[3].k), (0, 0, PLACEHOLDER));
        assert_eq!(
            slots,
            vec![Slot {
                index: 3,
                kind: SlotKind::Caller
            }]
        );

        let mut a = Asm::new();
        let far = a.label();
        a.jump_if(JEQ_K, 1, To::L(far), To::Next);
        for _ in 0..256 {
            a.ret(0);
        }
        a.bind(far);
        a.ret(0);
        assert!(matches!(a.finish(), Err(AsmError::TooFar(_))));

        let mut a = Asm::new();
        let never = a.label();
        a.ja(never);
        assert!(matches!(a.finish(), Err(AsmError::Layout(m)) if m.contains("never bound")));
    }
}
