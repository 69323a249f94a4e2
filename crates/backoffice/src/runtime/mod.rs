//! What every function shares at run time: the clock, settings, log subscriber, EMF
//! metrics, the payloads the scheduled jobs accept, and the run skeleton (deadline,
//! errors reported to Lambda).

pub mod clock;
pub mod config;
pub mod init;
pub mod job;
pub mod logging;
pub mod metrics;
pub mod trigger;
