//! What a process started by Slurm learns from its environment.

/// Where this process runs in a Slurm job, from the variables `srun` sets
/// (`SLURM_PROCID`, `SLURM_NODEID`, ...): the rank and node of a pool worker started
/// by the [`Slurm`](crate::Slurm) launcher, or of a driver program started by
/// `sbatch`/`srun` itself.
///
/// ```
/// // `None` outside a Slurm job step.
/// if let Some(env) = multiproc::SlurmEnv::current() {
///     println!("rank {} of {} on {}", env.procid, env.ntasks, env.nodename);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmEnv {
    /// The job's id (`SLURM_JOB_ID`).
    pub job_id: u64,
    /// The step's id (`SLURM_STEP_ID`), if this process runs in a step.
    pub step_id: Option<u64>,
    /// This task's rank among the step's tasks (`SLURM_PROCID`, from 0).
    pub procid: u32,
    /// This task's rank on its node (`SLURM_LOCALID`).
    pub localid: u32,
    /// The number of tasks in the step (`SLURM_NTASKS`, or 1).
    pub ntasks: u32,
    /// This node's index among the step's nodes (`SLURM_NODEID`).
    pub nodeid: u32,
    /// This node's name (`SLURMD_NODENAME`, else the host name).
    pub nodename: String,
    /// The step's nodes (`SLURM_STEP_NODELIST`, else `SLURM_JOB_NODELIST`), in
    /// Slurm's compact form (`n[1-2]`).
    pub nodelist: String,
}

impl SlurmEnv {
    /// This process's place in its Slurm job; `None` outside a job.
    pub fn current() -> Option<SlurmEnv> {
        SlurmEnv::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `var`.
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<SlurmEnv> {
        let num = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok());
        let small = |name: &str| num(name).and_then(|v| u32::try_from(v).ok());
        let job_id = num("SLURM_JOB_ID").or_else(|| num("SLURM_JOBID"))?;
        Some(SlurmEnv {
            job_id,
            step_id: num("SLURM_STEP_ID").or_else(|| num("SLURM_STEPID")),
            procid: small("SLURM_PROCID").unwrap_or(0),
            localid: small("SLURM_LOCALID").unwrap_or(0),
            ntasks: small("SLURM_NTASKS").unwrap_or(1),
            nodeid: small("SLURM_NODEID").unwrap_or(0),
            nodename: var("SLURMD_NODENAME")
                .or_else(crate::process::remote::hostname)
                .unwrap_or_default(),
            nodelist: var("SLURM_STEP_NODELIST")
                .or_else(|| var("SLURM_JOB_NODELIST"))
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_step_variables() {
        let vars = [
            ("SLURM_JOB_ID", "42"),
            ("SLURM_STEP_ID", "3"),
            ("SLURM_PROCID", "5"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_NODEID", "1"),
            ("SLURMD_NODENAME", "n2"),
            ("SLURM_STEP_NODELIST", "n[1-2]"),
        ];
        let env = SlurmEnv::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        });
        assert_eq!(
            env,
            Some(SlurmEnv {
                job_id: 42,
                step_id: Some(3),
                procid: 5,
                localid: 1,
                ntasks: 8,
                nodeid: 1,
                nodename: "n2".into(),
                nodelist: "n[1-2]".into(),
            })
        );
        assert_eq!(SlurmEnv::from_vars(|_| None), None);
    }
}
