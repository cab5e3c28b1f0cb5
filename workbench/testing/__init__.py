"""Test infrastructure helpers for workbench (stub servers, fixtures)."""
