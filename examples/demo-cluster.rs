//! The main demo. The full multi-node demo (primary, secondaries, handover) arrives with the
//! daemon; until then this demonstrates what the libraries already do.
fn main() {
    println!("demo-cluster: not yet available (lands with the marsd/marsadm issue)");
}
