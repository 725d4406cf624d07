"""burstjdd.synth."""
