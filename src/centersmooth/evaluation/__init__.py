"""Evidence about the certificates: the empirical attack on the smoothed model, and the coverage
harness that measures how often each bound fails on problems whose output masses are known."""
