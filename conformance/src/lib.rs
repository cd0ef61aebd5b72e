//! # sotto-conformance
//!
//! Evidence that an implementation follows `docs/protocol.md`. Today: the known-answer vectors of
//! `vectors/` ([`vectors`]), generated from fixed seeds through `sotto-core` and checked against it, in a
//! form other implementers can run against their own code (schema in `vectors/README.md`).
//!
//! ```text
//!   vectors/*.json  --check_dir-->  per-case PASS/FAIL table      (implementers, CI)
//!   sotto-core      --generate_dir--> vectors/*-new.json          (drift is a diff)
//! ```

pub mod drive;
pub mod evidence;
pub mod model_run;
pub mod replay;
pub mod report;
pub mod target;
/// The known-answer vectors (crate `sotto-vectors`, in `vectors/`).
pub use sotto_vectors as vectors;
pub mod wiretap;
