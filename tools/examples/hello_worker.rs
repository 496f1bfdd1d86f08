//! A minimal ferrops worker. Run it on a local cluster:
//!
//!     cargo build --release -p ferrops --examples
//!     target/release/ferrops local --servers 2 --workers 2 -- target/release/examples/hello_worker

use ferrops::{Consistency, Rule, TableSpec, Worker};

fn main() -> anyhow::Result<()> {
    let w = Worker::connect(&ferrops::worker_config_from_env()?)?;
    let spec = TableSpec::new("weights", 4) // 4 floats per key
        .rule(Rule::Sgd { lr: 0.1 }) // the server applies w -= 0.1 * g
        .consistency(Consistency::BoundedDelay(1));
    let table = w.declare_table(spec)?;
    let keys: Vec<u64> = (0..1000).map(|i| i * (u64::MAX / 1000)).collect(); // sorted, unique
    let mut weights = vec![0.0f32; keys.len() * 4];
    for step in 0..20 {
        w.pull_into(table, &keys, &mut weights)?; // straight from the socket into `weights`
        let grads: Vec<f32> = weights.iter().map(|x| x - 1.0).collect(); // gradient of ½(x − 1)²
        let ticket = w.push_async(table, &keys, &grads)?;
        w.wait(ticket)?;
        w.clock()?; // finish this clock: bounded delay lets others run at most 1 ahead
        if w.rank() == 0 {
            println!("step {step:>2}: w[0] = {:.4}", weights[0]);
        }
    }
    w.finish()?;
    Ok(())
}
