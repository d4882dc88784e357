"""The harness: the CLI, the composed config, a job's run, sweeps, summaries and processes."""
