"""One running Beacon stack (stack.py) for the tests with real processes, the benchmark, the chaos
suite and the cluster; its processes (processes.py), databases (database.py) and database proxy."""
