//! Placeholder: filled in by the NBD issue.
fn main() {
    eprintln!("nbd-export: not yet available");
    std::process::exit(2);
}
