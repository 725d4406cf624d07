"""burstjdd.eval."""
