"""burstjdd.models."""
