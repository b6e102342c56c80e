"""asv benchmarks for performance-regression tracking; configured by ``asv.conf.json`` at the repo root."""
