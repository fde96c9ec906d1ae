"""Certification at data-set scale: the runner and its workers (in process, spawned or Ray),
the JSONL results file they append to and resume from, and the tables, reports and figures read
back from it."""
