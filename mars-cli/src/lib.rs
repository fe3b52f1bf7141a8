//! The `marsd` daemon and `marsadm` admin tool of MARS. They land after the library issues (DESIGN.md §7).
#![forbid(unsafe_code)]
