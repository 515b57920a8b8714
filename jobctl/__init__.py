"""jobctl: a batch job manager for one machine that scales out to Slurm."""

__version__ = "0.1.0"
