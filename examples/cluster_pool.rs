//! The same map on this machine or on the nodes of a Slurm cluster, chosen by a flag:
//! only the pool's launcher changes.
//!
//! ```text
//! cargo run --example cluster_pool                          # local workers
//! cargo run --example cluster_pool -- --slurm 2 2           # 2 nodes x 2 workers
//! ```
//!
//! On a cluster, run it where `srun` works: on a login node (the pool asks for an
//! allocation) or inside one (`salloc -N2`, `sbatch`). The binary must be on a file
//! system the nodes share, or add `.bcast(None)` to the launcher.

use multiproc::{Launcher, Pool, Slurm, SlurmEnv};

/// `x` squared, and where it was computed.
#[multiproc::worker]
fn sqr(x: u64) -> (u64, String) {
    let node = match SlurmEnv::current() {
        Some(env) => format!("{} (rank {})", env.nodename, env.procid),
        None => "this machine".to_owned(),
    };
    (x * x, node)
}

fn launcher(args: &[String]) -> Result<Launcher, String> {
    match args {
        [] => Ok(Launcher::Local),
        [flag, nodes, per_node] if flag == "--slurm" => {
            let nodes = nodes.parse().map_err(|e| format!("nodes: {e}"))?;
            let per_node = per_node
                .parse()
                .map_err(|e| format!("tasks per node: {e}"))?;
            Ok(Slurm::new().nodes(nodes).tasks_per_node(per_node).into())
        }
        _ => Err("usage: cluster_pool [--slurm <nodes> <tasks per node>]".to_owned()),
    }
}

fn main() -> multiproc::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let launcher = match launcher(&args) {
        Ok(launcher) => launcher,
        Err(usage) => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let pool = Pool::builder().processes(4).launcher(launcher).build()?;
    println!("cluster_pool: started {} workers", pool.processes());
    let results = pool.map::<sqr>(0..1000)?;
    let sum: u64 = results.iter().map(|(v, _)| v).sum();
    let mut places: Vec<&str> = results.iter().map(|(_, p)| p.as_str()).collect();
    places.sort_unstable();
    places.dedup();
    println!("cluster_pool: the squares of 0..1000 sum to {sum}");
    println!("cluster_pool: computed on {}", places.join(", "));
    pool.close();
    pool.join()?;
    Ok(())
}
