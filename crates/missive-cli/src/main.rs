//! The `missive` command-line tool.
fn main() {}
