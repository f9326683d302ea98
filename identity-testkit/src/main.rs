//! The identity-testkit binary (see `--help`).

fn main() {}
