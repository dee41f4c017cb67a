"""Whole experiments: the report's reproduction as a resumable plan of package commands
(reproduce), its write-up REPORT.md (report), and the speed benchmarks (benchmark)."""
