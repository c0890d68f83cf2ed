"""Tests of the shipped Prometheus and Alertmanager configuration."""
