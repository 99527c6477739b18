"""Development support shared by tests/ and bench/, never shipped: the package installs only
src/servicetrail, and tests/ is no place for code that the benchmarks import."""
