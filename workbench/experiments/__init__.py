"""Experiment configs and run folders."""
