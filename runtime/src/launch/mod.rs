//! Where workers run: [`Launcher::Local`] (child processes of this one, the default)
//! or [`Slurm`] (tasks of a Slurm job step, on other nodes, that connect back over TCP).
//!
//! This layer sits below `pool` and `manager`, which name a launcher in their builders:
//! it starts processes and hands back authenticated connections to them, and knows
//! nothing of what runs over those connections. `slurm` starts the step and accepts
//! the workers; `env` is what a process started by Slurm learns from its environment.

pub(crate) mod env;
pub(crate) mod error;
pub(crate) mod slurm;

pub use env::SlurmEnv;
pub use error::LaunchError;
pub use slurm::Slurm;

/// Where a pool's workers run.
///
/// `Local` is the default: workers are child processes on this machine.
/// [`Slurm`] (convertible with `into()`, so a builder takes `Slurm::new()` as is)
/// starts them with `srun`, in the current allocation or one it requests.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Launcher {
    /// Child processes of this process, on this machine.
    #[default]
    Local,
    /// Tasks of a Slurm job step, connecting back over TCP.
    Slurm(Box<Slurm>),
}

impl From<Slurm> for Launcher {
    fn from(slurm: Slurm) -> Launcher {
        Launcher::Slurm(Box::new(slurm))
    }
}
