//! The `exchange` command line's building blocks, as a library so tests and benchmarks can drive
//! the same code: node processes, the local cluster, the load generator, the demo.

pub mod cluster;
pub mod demo;
