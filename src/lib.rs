//! gda: an experiment runner for Grouped Differential Attention transformers.

pub mod analysis;
pub mod attention;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod experiments;
pub mod flops;
pub mod grow;
pub mod launcher;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod report;
pub mod slurm;
pub mod tasks;
pub mod train;
