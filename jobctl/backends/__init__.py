"""Backends run jobs somewhere (local processes, Slurm) and report what they observe.

A backend never writes the database: the service layer and the supervisor record observations.
"""
