"""Benchmarks behind `talkover bench ...`: they measure and print, they never serve calls."""
