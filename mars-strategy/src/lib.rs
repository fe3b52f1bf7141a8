//! Metadata store, propagation and strategy of MARS. Content lands with the metadata issue.
#![forbid(unsafe_code)]
