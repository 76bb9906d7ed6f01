//! harness (in progress).
