//! Writes the seed corpus of every target under `corpus/<target>/` (run from `fuzz/`:
//! `cargo run --example seeds`). Existing files of the same name are overwritten.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let sets = [
        ("state_load", precond_fuzz::state_seeds()),
        ("config_json", precond_fuzz::config_seeds()),
        ("matrix_parsers", precond_fuzz::matrix_seeds()),
        ("diagnostics_scale", precond_fuzz::diagnostics_seeds()),
    ];
    for (target, seeds) in sets {
        let dir = Path::new("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed_{name}")), bytes)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}
