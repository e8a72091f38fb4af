"""The training side: recipe resolution and checks, hardware adaptation, launch, merge, benchmarks."""
