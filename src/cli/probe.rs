//! `sandspec probe`: the kernel facts, for people or as JSON.

use clap::Args;

/// Arguments of `sandspec probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sandspec probe`.
pub fn exec(args: ProbeArgs) -> i32 {
    let f = crate::kernel::probe();
    if args.json {
        match serde_json::to_string_pretty(&f) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                say!("sandspec: failed to serialise kernel facts: {e}");
                return 1;
            }
        }
        return 0;
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!("kernel:             {} ({})", f.release, f.machine);
    println!("landlock:           {}", f.landlock);
    println!("seccomp filter:     {}", yes(f.seccomp));
    println!("seccomp user-notif: {}", yes(f.seccomp_user_notif));
    println!("user namespaces:    {}", yes(f.user_namespaces));
    println!("euid:               {}", f.euid);
    0
}
