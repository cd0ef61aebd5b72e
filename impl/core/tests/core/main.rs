//! Integration tests of sotto-core: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod block;
mod codecs;
mod common;
mod device;
mod group;
mod handover;
mod inbound;
mod records;
mod session;
mod sizes;
mod snapshots;
mod vectors;
mod wycheproof;
