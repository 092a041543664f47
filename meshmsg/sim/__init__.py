"""Discrete-event simulator that drives the production core in virtual time. Never imports trio."""
