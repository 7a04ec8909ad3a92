"""Measurement code behind benchmarks/: process memory, training-step cost, gradient error."""
