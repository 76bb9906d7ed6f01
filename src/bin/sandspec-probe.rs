//! sandspec-probe: performs one operation inside a sandbox and prints one
//! JSON line saying what happened (in progress).
fn main() {}
