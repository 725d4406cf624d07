"""burstjdd.train."""
