"""Starting Beacon's real processes for tests, the benchmark and the chaos suite."""
