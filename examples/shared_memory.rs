//! A block of shared memory that workers read by name, with no copy, and a
//! `ShareableList` they update: Python's `multiprocessing.shared_memory`.

use multiproc::{Item, ShareableList, SharedMemory};

/// Sums its quarter of the `f64`s in the block `name` and records it in the list.
#[multiproc::worker]
fn sum_part(name: String, list: String, part: usize) -> Result<(), multiproc::SharedMemoryError> {
    let shm = SharedMemory::open(&name)?; // attach by name: no copy of the data
    let values = shm.as_slice::<f64>();
    let quarter = values.len() / 4;
    let sum: f64 = values[part * quarter..(part + 1) * quarter].iter().sum();
    ShareableList::open(&list)?.set(part, sum)?;
    Ok(())
}

fn main() -> multiproc::Result<()> {
    let mut shm = SharedMemory::create(1000 * size_of::<f64>())?;
    for (i, x) in shm.as_mut_slice::<f64>().iter_mut().enumerate() {
        *x = i as f64;
    }
    let sums = ShareableList::new([Item::None, Item::None, Item::None, Item::None])?;
    let workers = (0..4)
        .map(|part| sum_part::spawn(shm.name().to_owned(), sums.name().to_owned(), part))
        .collect::<multiproc::Result<Vec<_>>>()?;
    for w in workers {
        w.join_value()?;
    }
    let mut total = 0.0;
    for item in sums.to_vec()? {
        if let Item::Float(x) = item {
            total += x;
        }
    }
    println!(
        "shared_memory: {} workers summed {} values to {total}",
        sums.len(),
        shm.size() / size_of::<f64>()
    );
    // Removing the names now; without this, they go when this program ends.
    sums.shm().unlink()?;
    shm.unlink()?;
    Ok(())
}
