//! MARS in Rust: the umbrella package. It holds the examples (`examples/`) and the black-box
//! test suites (`tests/`); the code lives in the workspace crates, re-exported here.
#![forbid(unsafe_code)]

pub use brick_core;
pub use mars_net;
pub use mars_strategy;
pub use xio;
