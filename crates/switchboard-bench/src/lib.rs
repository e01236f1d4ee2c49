//! Load generator for Switchboard and for the baseline servers it is compared
//! with, plus the reporter that turns runs into the side-by-side table.
//!
//! The generator is built to stay out of the way of what it measures: it runs
//! on one current-thread Tokio runtime (pin it to one core with `taskset`),
//! speaks WebSocket and HTTP/1.1 through the small clients in [`ws`] and
//! [`http`] that read frames in place from a reused buffer, and records
//! latencies into one shared HDR histogram, so a delivered message costs no
//! allocation.
//!
//! Only loopback targets are accepted ([`target::Target::parse`]).
//!
//! [`floor`] is the raw floor server: the kernel's cost of a loopback
//! delivery, measured with the same scenarios. [`hookapp`] is the minimal
//! application that answers Switchboard's hooks in the `hooks` benchmark.

#![forbid(unsafe_code)]

pub mod clock;
pub mod floor;
pub mod hookapp;
pub mod http;
pub mod net;
pub mod procfs;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod svg;
pub mod target;
pub mod util;
pub mod ws;
