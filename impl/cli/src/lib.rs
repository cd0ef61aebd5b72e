//! # sotto (library part): what the `sotto` binary and its tests share
//!
//! The binary (`src/main.rs`) is the command line; this library holds the two pieces that code
//! outside the binary's process also needs, so that nothing is compiled twice:
//!
//! - [`banner`]: the start-up lines `sotto serve` prints, and their reader;
//! - [`serve_child`]: `sotto serve` as a child process (`sotto soak` and the command-line tests).

pub mod banner;
pub mod serve_child;
