//! The examples are part of the product: run them as tests.

#[path = "../examples/custom-graph.rs"]
mod custom_graph;

#[test]
fn custom_graph_example_runs() {
    custom_graph::main().expect("the custom-graph example succeeds");
}

#[path = "../examples/demo-cluster/main.rs"]
mod demo_cluster;

#[test]
fn demo_cluster_three_nodes_end_with_all_replicas_equal() {
    demo_cluster::main().expect("the demo ends with all replicas equal");
}
