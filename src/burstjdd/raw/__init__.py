"""burstjdd.raw."""
